"""The GraphQL output types (Node, Event, Actor) and their construction from database rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from operator import itemgetter
from typing import Any

import strawberry
from strawberry.scalars import JSON

from db.json_text import decode_json
from db.repository import EventKey, event_key
from graphql_schema.context import Context
from graphql_schema.cursors import encode_cursor
from graphql_schema.limits import check_page_size

NODE_DESCRIPTION = (
    "An object the server can refetch by its id alone, through `node(id:)` or `nodes(ids:)` (Relay "
    "object identification). The id is a UUID in canonical text form (lowercase, hyphenated, e.g. "
    "`0b7e2a52-8d1c-4f6e-9a4b-3c2d1e0f9a8b`), used as it is: not a base64 `Type:id` global id. UUIDs "
    "are unique across every type, and Event is the only Node type today, so a Node id is an event's id."
)


# Here rather than in graphql_schema.relay: Event implements it, and relay imports this module,
# so defining it there would make the two modules import each other.
@strawberry.interface(description=NODE_DESCRIPTION)
class Node:
    id: strawberry.ID = strawberry.field(description="Globally unique: a UUID in canonical text form.")


@strawberry.type(description="Something that happened in an application, as recorded.")
class Event(Node):
    id: strawberry.ID = strawberry.field(description="Server-generated UUID; also its Node id.")
    component: str = strawberry.field(description="The part of the system the event is about.")
    environment: str = strawberry.field(description="Where it happened, e.g. `production`.")
    email: str | None = strawberry.field(description="Who caused it.")
    message: str = strawberry.field(description="What happened.")
    data: JSON = strawberry.field(description="Free-form details: always a JSON object.")
    created_at: datetime = strawberry.field(description="When the server recorded it (UTC).")

    @strawberry.field(
        description="Its position in the log, in commit order: pass it as `after` to "
        "`events(orderBy: OLDEST_FIRST)` or `eventRecorded` to get every event recorded after it."
    )
    def cursor(self) -> str:
        """The opaque cursor of this event's position (the same as its edge's cursor)."""
        return encode_cursor(EventKey(self.created_at, uuid.UUID(self.id)))

    @strawberry.field(description="Who recorded it: the actor behind `email` (null without an email).")
    async def actor(self, info: strawberry.Info[Context, None]) -> Actor | None:
        """The actor for this event's email, batched across the request."""
        return await actor_of_email(info.context, self.email)


@strawberry.type(description="An email that records events: who, how often, when.")
class Actor:
    email: str
    event_count: int = strawberry.field(description="How many events carry this email.")
    first_seen_at: datetime = strawberry.field(description="Its oldest event's createdAt.")
    last_seen_at: datetime = strawberry.field(description="Its newest event's createdAt.")

    @strawberry.field(description="Its newest events, newest first.")
    async def events(self, info: strawberry.Info[Context, None], first: int = 10) -> list[Event]:
        """The actor's `first` newest events, batched across the request."""
        check_page_size("first", first, info.context.settings)
        rows = await info.context.loaders.actor_events.load((self.email, first))
        return [event_from_record(row) for row in rows]


async def actor_of_email(context: Context, email: str | None) -> Actor | None:
    """`Event.actor` itself, shared by the resolver and the compiled plans (graphql_schema.plans)."""
    if email is None:
        return None
    stats = await context.loaders.actor_stats.load(email)
    return actor_from_stats(stats) if stats is not None else None


def _data(record: Mapping[str, Any]) -> Any:
    data = record["data"]
    return decode_json(data) if isinstance(data, str) else data


# How each Event attribute is read from a row with the repository's EVENT_COLUMNS (`data` as JSON
# text): the one rule, by which Event objects are built and compiled plans read rows directly.
EVENT_FROM_ROW: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "id": lambda record: strawberry.ID(str(record["id"])),
    "component": itemgetter("component"),
    "environment": itemgetter("environment"),
    "email": itemgetter("email"),
    "message": itemgetter("message"),
    "data": _data,
    "created_at": itemgetter("created_at"),
}


def row_cursor(record: Mapping[str, Any]) -> str:
    """`Event.cursor` of the event in `record`, read from the row."""
    return encode_cursor(event_key(record))


def event_from_record(record: Mapping[str, Any]) -> Event:
    """An Event from a row with the repository's EVENT_COLUMNS."""
    return Event(**{name: read(record) for name, read in EVENT_FROM_ROW.items()})


def actor_from_stats(stats: Mapping[str, Any]) -> Actor:
    """An Actor from a row of db.actors.actor_stats_by_email."""
    return Actor(
        email=stats["email"],
        event_count=stats["event_count"],
        first_seen_at=stats["first_seen_at"],
        last_seen_at=stats["last_seen_at"],
    )
