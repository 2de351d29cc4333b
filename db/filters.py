"""The one filter object both doors fill in, and its translation to a SQL WHERE clause."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader wants; every field set narrows the result (they are ANDed)."""

    component: str | None = None
    environment: str | None = None
    email: str | None = None
    component_in: tuple[str, ...] | None = None
    environment_in: tuple[str, ...] | None = None
    # The legacy REST `message`: case-sensitive substring, `%` and `_` literal.
    message_substring: str | None = None
    # GraphQL `messageContains`: the same, case-insensitive.
    message_contains: str | None = None
    # Full-text search over the message (web-search syntax: words, "phrases", OR, -word).
    search: str | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    data_contains: dict[str, Any] | None = None


class SqlParams:
    """Collects positional parameters and hands out their `$n` placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def filter_conditions(event_filter: EventFilter, params: SqlParams) -> list[str]:
    """SQL conditions for `event_filter`; each one is served by an index of migration 0001."""
    conditions: list[str] = []
    for column in ("component", "environment", "email"):
        value = getattr(event_filter, column)
        if value is not None:
            conditions.append(f"{column} = {params.add(value)}")
    if event_filter.component_in is not None:
        conditions.append(f"component = ANY({params.add(list(event_filter.component_in))}::text[])")
    if event_filter.environment_in is not None:
        conditions.append(f"environment = ANY({params.add(list(event_filter.environment_in))}::text[])")
    # strpos, not LIKE: the needle is matched literally, so `%` and `_` need no escaping.
    if event_filter.message_substring is not None:
        conditions.append(f"strpos(message, {params.add(event_filter.message_substring)}) > 0")
    if event_filter.message_contains is not None:
        needle = params.add(event_filter.message_contains)
        conditions.append(f"strpos(lower(message), lower({needle})) > 0")
    if event_filter.search is not None:
        # The expression must match ix_events_message_fts exactly for the index to be used.
        query = params.add(event_filter.search)
        conditions.append(f"to_tsvector('simple', message) @@ websearch_to_tsquery('simple', {query})")
    if event_filter.created_from is not None:
        conditions.append(f"created_at >= {params.add(event_filter.created_from)}")
    if event_filter.created_to is not None:
        conditions.append(f"created_at < {params.add(event_filter.created_to)}")
    if event_filter.data_contains is not None:
        document = params.add(orjson.dumps(event_filter.data_contains).decode())
        conditions.append(f"data @> {document}::jsonb")
    return conditions
