"""Relay connections over events: keyset pages on (createdAt, id), in both directions and orders."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import strawberry

from db import filters
from db.engine import Database
from db.repository import EventKey, count_events, list_events_page
from graphql_schema.cursors import next_key, previous_key
from graphql_schema.types import Event, event_from_record, row_cursor


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One page asked for: the filter, the order, the cursors' range and the size from one end."""

    event_filter: filters.EventFilter
    newest_first: bool
    after: EventKey | None
    before: EventKey | None
    size: int
    from_end: bool  # `last:` paging: the page is the end of the range, not its start


@strawberry.type(description="One event in a list, with the cursor of its position.")
class EventEdge:
    # The row itself: an Event object is made only when the executor asks for the node (a compiled
    # plan reads the row directly, graphql_schema.plans).
    record: strawberry.Private[Mapping[str, Any]]

    @strawberry.field
    def cursor(self) -> str:
        """Encoded only when asked for: most pages are read without their cursors."""
        return row_cursor(self.record)

    @strawberry.field
    def node(self) -> Event:
        return event_from_record(self.record)


@strawberry.type(description="Where a page sits in the whole list.")
class PageInfo:
    start_cursor: str | None = strawberry.field(description="The first edge's cursor (null when empty).")
    end_cursor: str | None = strawberry.field(description="The last edge's cursor (null when empty).")
    database: strawberry.Private[Database]
    request: strawberry.Private[PageRequest]
    more_beyond_page: strawberry.Private[bool]

    @strawberry.field(
        description="Whether a matching event follows this page in this order (including at or after "
        "`before`). Exact: may cost one indexed EXISTS-like query when paging backward."
    )
    async def has_next_page(self) -> bool:
        """True when some matching event comes after the page's last edge."""
        if not self.request.from_end and self.more_beyond_page:
            return True
        if self.request.before is None:
            return False
        return await self._exists_at_or_after(self.request.before)

    @strawberry.field(
        description="Whether a matching event precedes this page in this order (including at or before "
        "`after`). Exact: may cost one indexed EXISTS-like query when paging forward."
    )
    async def has_previous_page(self) -> bool:
        """True when some matching event comes before the page's first edge."""
        if self.request.from_end and self.more_beyond_page:
            return True
        if self.request.after is None:
            return False
        return await self._exists_at_or_before(self.request.after)

    async def _exists_at_or_after(self, key: EventKey) -> bool:
        # "At or after key" is "strictly after the key just before it" in this order; a
        # zero-size page still fetches one row, and its has-more flag is the answer.
        just_before = next_key(key) if self.request.newest_first else previous_key(key)
        async with self.database.replica_read() as connection:
            _, found = await list_events_page(
                connection,
                self.request.event_filter,
                newest_first=self.request.newest_first,
                after=just_before,
                before=None,
                limit=0,
            )
        return found

    async def _exists_at_or_before(self, key: EventKey) -> bool:
        just_after = previous_key(key) if self.request.newest_first else next_key(key)
        async with self.database.replica_read() as connection:
            _, found = await list_events_page(
                connection,
                self.request.event_filter,
                newest_first=self.request.newest_first,
                after=None,
                before=just_after,
                limit=0,
                from_end=True,
            )
        return found


@strawberry.type(description="A page of events (a Relay connection).")
class EventConnection:
    edges: list[EventEdge]
    page_info: PageInfo
    database: strawberry.Private[Database]
    event_filter: strawberry.Private[filters.EventFilter]

    @strawberry.field(description="The page's events (the same as edges' nodes).")
    def nodes(self) -> list[Event]:
        """The page's events, in order."""
        return [event_from_record(edge.record) for edge in self.edges]

    @strawberry.field(
        description="How many events match the filter in all (cursors ignored). Counted only when asked."
    )
    async def total_count(self) -> int:
        """An exact count of matching events."""
        async with self.database.replica_read() as connection:
            return await count_events(connection, self.event_filter)


async def load_page(database: Database, request: PageRequest) -> EventConnection:
    """Fetch one keyset page and wrap it as a connection."""
    async with database.replica_read() as connection:
        rows, more = await list_events_page(
            connection,
            request.event_filter,
            newest_first=request.newest_first,
            after=request.after,
            before=request.before,
            limit=request.size,
            from_end=request.from_end,
        )
    edges = [EventEdge(record=row) for row in rows]
    page_info = PageInfo(
        start_cursor=edges[0].cursor() if edges else None,
        end_cursor=edges[-1].cursor() if edges else None,
        database=database,
        request=request,
        more_beyond_page=more,
    )
    return EventConnection(
        edges=edges, page_info=page_info, database=database, event_filter=request.event_filter
    )
