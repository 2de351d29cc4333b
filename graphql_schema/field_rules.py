"""What each field of the schema needs: the scope that may read it, and what it adds to a request's cost.

These tables are the policy; graphql_schema.policy applies them to a document before it runs, and
tests/graphql_schema/test_field_rules.py walks the schema and fails for a field they do not name.
"""

from collections.abc import Mapping
from enum import Enum
from math import ceil
from typing import Any

from api.settings import Settings
from db.api_keys import EVENTS_READ, EVENTS_WRITE


class Access(Enum):
    """Who may see a field."""

    # Reveals nothing stored (introspection, __typename).
    OPEN = "open"
    # Reveals stored events or actors: needs events:read.
    READ = EVENTS_READ
    # Records events: needs events:write.
    WRITE = EVENTS_WRITE
    # A field of an event: events:read, or the events:write of the caller who has just recorded that
    # very event (a field directly on a WRITE field's result). Nothing reachable from it is covered.
    OWN_EVENT = "own event"


_EVENT_FIELDS = ("id", "component", "environment", "email", "message", "data", "createdAt", "cursor")

FIELD_ACCESS: Mapping[str, Mapping[str, Access]] = {
    "Query": dict.fromkeys(("events", "event", "actor", "node", "nodes", "eventStats"), Access.READ),
    "Mutation": dict.fromkeys(("recordEvent", "recordEvents"), Access.WRITE),
    "Subscription": {"eventRecorded": Access.READ},
    "Event": {**dict.fromkeys(_EVENT_FIELDS, Access.OWN_EVENT), "actor": Access.READ},
    # Reached only through Query.node(s), which needs events:read already.
    "Node": {"id": Access.READ},
    "Actor": dict.fromkeys(("email", "eventCount", "firstSeenAt", "lastSeenAt", "events"), Access.READ),
    "EventConnection": dict.fromkeys(("edges", "nodes", "pageInfo", "totalCount"), Access.READ),
    "EventEdge": dict.fromkeys(("cursor", "node"), Access.READ),
    "PageInfo": dict.fromkeys(("startCursor", "endCursor", "hasNextPage", "hasPreviousPage"), Access.READ),
    # Counts over time reveal stored events in aggregate: events:read, like the events themselves.
    "EventStatsResult": dict.fromkeys(("rows", "truncated"), Access.READ),
    "EventStatsRow": dict.fromkeys(
        ("component", "environment", "email", "bucket", "count", "firstCreatedAt", "lastCreatedAt"),
        Access.READ,
    ),
}


def field_access(type_name: str, field_name: str) -> Access | None:
    """The rule for a field; None when the tables name none (the policy then refuses it)."""
    if field_name.startswith("__") or type_name.startswith("__"):
        return Access.OPEN  # introspection: the schema is public, as schema.graphql is
    return FIELD_ACCESS.get(type_name, {}).get(field_name)


# The cost model: each object a response can hold is one node; a list or connection multiplies what
# is below it by how many items it can hold (GitHub's node limit). Large text counts one node per
# KiB its limit allows, so the bytes of a response are bounded as well as its objects.
# `eventStats` is costed like a connection: its `rows` are a page of `first` objects.
CONNECTION_FIELDS = frozenset({("Query", "events"), ("Query", "eventStats")})
PAGE_FIELDS = frozenset(
    {("EventConnection", "edges"), ("EventConnection", "nodes"), ("EventStatsResult", "rows")}
)


def list_size(type_name: str, field_name: str, arguments: Mapping[str, Any], settings: Settings) -> int:
    """How many items one instance of this field can hold (1 for a field that is not a list)."""
    key = (type_name, field_name)
    if key == ("Actor", "events"):
        return _page(arguments.get("first"), settings)
    # Like pages: more ids or inputs than the field accepts is its own error (BAD_USER_INPUT).
    if key == ("Query", "nodes"):
        return min(len(arguments.get("ids") or ()), settings.max_page_size)
    if key == ("Mutation", "recordEvents"):
        return min(len(arguments.get("inputs") or ()), settings.max_batch_events)
    return 1


def connection_page_size(arguments: Mapping[str, Any], settings: Settings) -> int:
    """The page a connection field asks for: `last` when given, else `first` (its default included)."""
    last = arguments.get("last")
    return _page(last if last is not None else arguments.get("first"), settings)


def text_weight(type_name: str, field_name: str, settings: Settings) -> int:
    """Nodes a scalar field counts for: one per KiB of its size limit for large text, else none."""
    key = (type_name, field_name)
    if key == ("Event", "data"):
        return ceil(settings.max_data_bytes / 1024)
    if key == ("Event", "message"):
        return ceil(settings.max_message_length / 1024)
    return 0


def _page(size: object, settings: Settings) -> int:
    # A size beyond the maximum is refused by the field itself (BAD_USER_INPUT): what the response
    # can hold is at most the maximum. An explicit null means the field's own default: counted at
    # the maximum, an upper bound that needs no copy of that default here.
    if not isinstance(size, int):
        return settings.max_page_size
    return max(0, min(size, settings.max_page_size))
