"""The event filter, defined once: each field says what it compares and what each door calls it.

`EventFilter` is the definition. Every field names its `Condition` (which column, compared how)
and its names in the doors, and everything else is derived by walking `FILTER_FIELDS`:
- the SQL conditions (`filter_conditions`, below);
- the live feed's matcher (`db.live_feed.matching`);
- the GraphQL input type (`graphql_schema.inputs`);
- the REST query parameters (`rest.filter_params`).
Adding a filter field of an existing kind is one line here (and the index it needs, in a migration);
tests/db/test_filter_definition.py fails if any of those paths lacks it.
"""

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar

from db.json_text import encode_json


class InvalidFilter(ValueError):
    """A filter value no event could match, or one PostgreSQL cannot compare; `field` is its name."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class SqlParams:
    """Collects positional parameters and hands out their `$n` placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


# --- The kinds of condition: what a value is, how it is checked, and its SQL -------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """How a filter value selects events by `column`. Subclasses are the kinds of comparison."""

    column: str
    # The Python type of a value for this kind (doors derive their input types from it).
    value_type: ClassVar[type] = str

    def check(self, name: str, value: Any) -> None:
        check_filter_text(name, value)

    def sql(self, value_sql: str) -> str:
        """The SQL condition, `value_sql` being the placeholder (or expression) of the value."""
        raise NotImplementedError

    def sql_value(self, value: Any) -> Any:
        return value


class Equals(Condition):
    def sql(self, value_sql: str) -> str:
        return f"{self.column} = {value_sql}"


class AnyOf(Condition):
    """The column equals one of the values; an empty list matches nothing."""

    value_type = tuple

    def sql(self, value_sql: str) -> str:
        return f"{self.column} = ANY({value_sql}::text[])"

    def sql_value(self, value: Any) -> Any:
        return list(value)


class Substring(Condition):
    """Case-sensitive substring, matched literally (`%` and `_` are ordinary characters)."""

    def sql(self, value_sql: str) -> str:
        # strpos, not LIKE: the needle is matched literally, so `%` and `_` need no escaping.
        return f"strpos({self.column}, {value_sql}) > 0"


class SubstringIgnoringCase(Condition):
    """Substring after PostgreSQL's lower() of both sides (its ctype decides beyond ASCII)."""

    def sql(self, value_sql: str) -> str:
        return f"strpos(lower({self.column}), lower({value_sql})) > 0"


class WebSearch(Condition):
    """Full-text search in web-search syntax over the `simple` configuration."""

    def sql(self, value_sql: str) -> str:
        # The expression must match the column's full-text index exactly for the index to be used.
        return f"to_tsvector('simple', {self.column}) @@ websearch_to_tsquery('simple', {value_sql})"


class AtOrAfter(Condition):
    value_type = datetime

    def check(self, name: str, value: Any) -> None:
        check_instant(name, value)

    def sql(self, value_sql: str) -> str:
        return f"{self.column} >= {value_sql}"


class Before(Condition):
    value_type = datetime

    def check(self, name: str, value: Any) -> None:
        check_instant(name, value)

    def sql(self, value_sql: str) -> str:
        return f"{self.column} < {value_sql}"


class JsonContains(Condition):
    """JSONB containment (`@>`) of a JSON object."""

    value_type = dict

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise InvalidFilter(name, "Must be a JSON object.")
        _check_json(name, value)

    def sql(self, value_sql: str) -> str:
        return f"{self.column} @> {value_sql}::jsonb"

    def sql_value(self, value: Any) -> Any:
        return encode_json(value)


# --- The definition -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FilterField:
    """One field of EventFilter as the derivations see it."""

    name: str  # the attribute of EventFilter (and of the GraphQL input's Python class)
    condition: Condition
    description: str
    graphql: str | None  # the GraphQL input field's name; None: not offered over GraphQL
    rest: str | None  # the REST query parameter's name; None: not offered over REST


def filter_field(
    condition: Condition, description: str, *, graphql: str | None = None, rest: str | None = None
) -> Any:
    """A field of EventFilter: unset (None) by default, carrying its definition as metadata."""
    spec = {"condition": condition, "description": description, "graphql": graphql, "rest": rest}
    return field(default=None, metadata={"filter": spec})


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader wants; every field set narrows the result (they are ANDed)."""

    component: str | None = filter_field(
        Equals("component"), "Exact component.", graphql="component", rest="component"
    )
    environment: str | None = filter_field(
        Equals("environment"), "Exact environment.", graphql="environment", rest="environment"
    )
    email: str | None = filter_field(Equals("email"), "Exact email.", graphql="email", rest="email")
    component_in: tuple[str, ...] | None = filter_field(
        AnyOf("component"), "Any of these components.", graphql="componentIn"
    )
    environment_in: tuple[str, ...] | None = filter_field(
        AnyOf("environment"), "Any of these environments.", graphql="environmentIn"
    )
    email_in: tuple[str, ...] | None = filter_field(AnyOf("email"), "Any of these emails.", graphql="emailIn")
    # The legacy REST `message`.
    message_substring: str | None = filter_field(
        Substring("message"), "Case-sensitive substring of the message.", rest="message"
    )
    message_contains: str | None = filter_field(
        SubstringIgnoringCase("message"),
        "Case-insensitive substring of the message; `%` and `_` are literal.",
        graphql="messageContains",
    )
    search: str | None = filter_field(
        WebSearch("message"),
        'Full-text search over the message (web-search syntax: words, "phrases", OR, -word).',
        graphql="search",
    )
    created_from: datetime | None = filter_field(
        AtOrAfter("created_at"),
        "Created at or after this instant (inclusive).",
        graphql="from",
        rest="from_date",
    )
    created_to: datetime | None = filter_field(
        Before("created_at"), "Created before this instant (exclusive).", graphql="to"
    )
    data_contains: dict[str, Any] | None = filter_field(
        JsonContains("data"),
        "A JSON object the event's data must contain (JSONB `@>`).",
        graphql="dataContains",
    )


FILTER_FIELDS: tuple[FilterField, ...] = tuple(
    FilterField(name=f.name, **f.metadata["filter"]) for f in fields(EventFilter)
)
FILTER_FIELDS_BY_NAME: dict[str, FilterField] = {spec.name: spec for spec in FILTER_FIELDS}


def set_fields(event_filter: EventFilter) -> list[tuple[FilterField, Any]]:
    """The fields `event_filter` sets, with their values, in definition order."""
    return [
        (spec, value) for spec in FILTER_FIELDS if (value := getattr(event_filter, spec.name)) is not None
    ]


# --- Checks and SQL -----------------------------------------------------------------------------


def check_filter(event_filter: EventFilter) -> None:
    """Raise InvalidFilter for a value PostgreSQL cannot compare or no event could match."""
    for spec, value in set_fields(event_filter):
        spec.condition.check(spec.name, value)


def filter_conditions(event_filter: EventFilter, params: SqlParams) -> list[str]:
    """SQL conditions for `event_filter`; each one is served by an index (see the migrations)."""
    check_filter(event_filter)
    return [
        spec.condition.sql(params.add(spec.condition.sql_value(value)))
        for spec, value in set_fields(event_filter)
    ]


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


def utc_if_naive(moment: datetime) -> datetime:
    """An instant a client gave without an offset is read as UTC, the zone every answer uses."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
