"""The Query type: event lists (Relay connection), one event, one actor, any Node by id."""

import uuid
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import strawberry

from db import filters
from db.filters import InvalidFilter, check_filter_text
from db.stats import DEFAULT_STATS_ROWS
from graphql_schema.context import Context
from graphql_schema.cursors import decode_cursor
from graphql_schema.errors import BadUserInput
from graphql_schema.inputs import EventFilter, EventOrder, to_event_filter
from graphql_schema.limits import check_page_size
from graphql_schema.pagination import EventConnection, PageRequest, load_page
from graphql_schema.relay import node_field, nodes_field
from graphql_schema.stats import (
    EVENT_STATS_DESCRIPTION,
    EventDimension,
    EventStatsResult,
    TimeBucket,
    event_stats,
)
from graphql_schema.types import Actor, Event, actor_from_stats, event_from_record

DEFAULT_PAGE_SIZE = 50

EVENTS_DESCRIPTION = (
    "Events matching `filter`, one keyset page at a time. Page forward with `first`/`after` or "
    "backward with `last`/`before` (pass `first` or `last`, not both; `first` defaults to 50 when "
    "`last` is absent). `first`/`last` range from 0 to the server's maximum page size (500 by "
    "default); more is an error, never a silent clamp. Cursors are opaque and stay valid while new "
    "events arrive: paging never repeats or skips an event."
)


@strawberry.type
class Query:
    @strawberry.field(description=EVENTS_DESCRIPTION)
    async def events(
        self,
        info: strawberry.Info[Context, None],
        event_filter: Annotated[EventFilter | None, strawberry.argument(name="filter")] = None,
        first: int | None = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        order_by: EventOrder = EventOrder.NEWEST_FIRST,
    ) -> EventConnection:
        """A page of matching events in the requested order."""
        # `first` has a default, so only the query text tells whether the client also sent it.
        first_sent = info.selected_fields[0].arguments.get("first") is not None
        return await events_page(
            info.context,
            lambda: to_event_filter(event_filter),
            first,
            after,
            last,
            before,
            order_by,
            first_sent=first_sent,
        )

    @strawberry.field(
        description="One event by id; null when there is none. The id must be a UUID.",
    )
    async def event(self, info: strawberry.Info[Context, None], id: strawberry.ID) -> Event | None:
        """The event with this id, batched with other lookups of the request."""
        return await event_by_id(info.context, id)

    @strawberry.field(
        description="The actor with this email; null when no event carries it.",
    )
    async def actor(self, info: strawberry.Info[Context, None], email: str) -> Actor | None:
        """Who recorded events under `email`, how often and when."""
        return await actor_by_email(info.context, email)

    @strawberry.field(description=EVENT_STATS_DESCRIPTION)
    async def event_stats(
        self,
        info: strawberry.Info[Context, None],
        event_filter: Annotated[EventFilter | None, strawberry.argument(name="filter")] = None,
        group_by: list[EventDimension] | None = None,  # type: ignore[valid-type]
        bucket: TimeBucket | None = None,  # type: ignore[valid-type]
        time_zone: str | None = "UTC",
        first: int | None = DEFAULT_STATS_ROWS,
    ) -> EventStatsResult:
        """Matching events counted per group and time bucket."""
        return await event_stats(
            info.context, to_event_filter(event_filter), group_by, bucket, time_zone, first
        )

    node = node_field
    nodes = nodes_field


async def events_page(
    context: Context,
    event_filter: Callable[[], filters.EventFilter],
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    order_by: EventOrder,
    *,
    first_sent: bool,
) -> EventConnection:
    """`Query.events` itself, shared by the resolver and the compiled plans (graphql_schema.plans).

    `event_filter` converts the argument when its turn comes: the checks run in the same order
    whichever form the argument arrived in.
    """
    if last is not None and first_sent:
        raise BadUserInput("Pass `first` or `last`, not both.", field="last")
    from_end = last is not None
    size = last if last is not None else (first if first is not None else DEFAULT_PAGE_SIZE)
    check_page_size("last" if from_end else "first", size, context.settings)
    request = PageRequest(
        event_filter=event_filter(),
        newest_first=order_by is EventOrder.NEWEST_FIRST,
        after=decode_cursor(after, "after") if after is not None else None,
        before=decode_cursor(before, "before") if before is not None else None,
        size=size,
        from_end=from_end,
    )
    return await load_page(context.database, request)


# `Query.event` and `Query.actor` themselves, shared by the resolvers and the compiled plans.


async def event_by_id(context: Context, id: str) -> Event | None:
    row = await event_row_by_id(context, id)
    return event_from_record(row) if row is not None else None


async def event_row_by_id(context: Context, id: str) -> Mapping[str, Any] | None:
    """The row of the event with this id (a compiled plan reads it without making an Event)."""
    try:
        event_id = uuid.UUID(id)
    except ValueError:
        raise BadUserInput("`id` must be a UUID.", field="id") from None
    return await context.loaders.event.load(event_id)


async def actor_by_email(context: Context, email: str) -> Actor | None:
    try:
        check_filter_text("email", email)  # the filters' rule: text PostgreSQL can compare
    except InvalidFilter as error:
        raise BadUserInput(error.reason, field="email") from None
    stats = await context.loaders.actor_stats.load(email)
    return actor_from_stats(stats) if stats is not None else None
