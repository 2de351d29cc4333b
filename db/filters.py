"""The one filter object both doors fill in, and its translation to a SQL WHERE clause."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from db.json_text import encode_json


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


_TEXT_FIELDS = (
    "component",
    "environment",
    "email",
    "component_in",
    "environment_in",
    "message_substring",
    "message_contains",
    "search",
)


class InvalidFilter(ValueError):
    """A filter value PostgreSQL cannot compare (it could never match a stored event anyway)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def check_filter_text(field: str, value: object) -> None:
    """Refuse NUL and lone surrogates: PostgreSQL text cannot hold them, so the query would fail."""
    texts = value if isinstance(value, tuple | list) else (value,)
    for text in texts:
        if not isinstance(text, str):
            continue
        if "\x00" in text:
            raise InvalidFilter(field, "Filter values can not contain NUL characters.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidFilter(field, "Filter values must be valid Unicode text.") from None


def _check_json(field: str, value: object) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            check_filter_text(field, key)
            _check_json(field, item)
    elif isinstance(value, list):
        for item in value:
            _check_json(field, item)
    else:
        check_filter_text(field, value)


class SqlParams:
    """Collects positional parameters and hands out their `$n` placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def check_filter(event_filter: EventFilter) -> None:
    """Raise InvalidFilter when a value is one PostgreSQL cannot compare."""
    for field in _TEXT_FIELDS:
        check_filter_text(field, getattr(event_filter, field))
    _check_json("data_contains", event_filter.data_contains)
    for field in ("created_from", "created_to"):
        check_instant(field, getattr(event_filter, field))


def check_instant(field: str, value: datetime | None) -> None:
    """Raise InvalidFilter for an instant that has no UTC equivalent within the years 1 to 9999.

    `0001-01-01T00:00:00+01:00` is a valid timestamp, but in UTC it falls in year 0, which neither
    Python nor the database driver can represent.
    """
    if value is None or value.tzinfo is None:
        return
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise InvalidFilter(field, "Instants must fall within the years 1 to 9999 in UTC.") from None


def filter_conditions(event_filter: EventFilter, params: SqlParams) -> list[str]:
    """SQL conditions for `event_filter`; each one is served by an index (see the migrations)."""
    check_filter(event_filter)
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
        document = params.add(encode_json(event_filter.data_contains))
        conditions.append(f"data @> {document}::jsonb")
    return conditions
