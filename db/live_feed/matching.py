"""`EventFilter` applied to one event in Python, agreeing with the SQL of db/filters.py field by field.

The live feed cannot run a WHERE clause per subscriber per event, so the same semantics are
evaluated here. Where Python cannot be sure to agree with PostgreSQL (full-text search, and
case-insensitive matching outside ASCII, which depends on the database's ctype), the question
is put to PostgreSQL itself, batched: `answer_text_questions`.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any, Literal

import asyncpg

from db.filters import EventFilter
from db.json_text import encode_json
from db.live_feed.notifications import EventRecord

# What PostgreSQL must decide, per (message, needle): the exact expressions of db/filters.py.
TextQuestionKind = Literal["search", "contains_ci"]


def parse_jsonb_text(text: str) -> Any:
    """JSON text as jsonb compares it: numbers exact (Decimal), so 0.1 == 0.10 and big ints survive."""
    return json.loads(text, parse_float=Decimal)


def jsonb_contains(container: Any, contained: Any) -> bool:
    """PostgreSQL's `container @> contained` on values from `parse_jsonb_text`.

    Objects contain objects whose every key is present with a contained value; arrays contain
    arrays whose every element is contained by some element (order and duplicates ignored);
    scalars contain only an equal scalar. At the top level only, an array contains a scalar it
    has as an element (PostgreSQL stores a top-level scalar as a one-element array).
    """
    if isinstance(container, dict) or isinstance(contained, dict):
        both_objects = isinstance(container, dict) and isinstance(contained, dict)
        return both_objects and _deep_contains(container, contained)
    if not isinstance(container, list) and isinstance(contained, list):
        return False  # a top-level scalar never contains an array, not even [itself]
    return _array_contains(
        container if isinstance(container, list) else [container],
        contained if isinstance(contained, list) else [contained],
    )


def _deep_contains(container: Any, contained: Any) -> bool:
    """Containment below the top level: both sides must be the same kind of JSON value."""
    if isinstance(contained, dict):
        return isinstance(container, dict) and all(
            key in container and _deep_contains(container[key], wanted) for key, wanted in contained.items()
        )
    if isinstance(contained, list):
        return isinstance(container, list) and _array_contains(container, contained)
    return _scalar_equal(container, contained)


def _array_contains(container: list[Any], contained: list[Any]) -> bool:
    nested = [element for element in container if _is_container(element)]
    for wanted in contained:
        if _is_container(wanted):
            if not any(_deep_contains(have, wanted) for have in nested):
                return False
        elif not any(_scalar_equal(have, wanted) for have in container):
            return False
    return True


def _is_container(value: Any) -> bool:
    return isinstance(value, dict | list)


def _scalar_equal(left: Any, right: Any) -> bool:
    """jsonb scalar equality: same JSON type, then equal (numbers by value: 1 == 1.0)."""
    if _is_container(left) or _is_container(right):
        return False
    # bool is an int in Python but never equal to a number in jsonb.
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    return left == right  # int and Decimal compare exactly by value


class CandidateEvent:
    """One event being matched; its `data` is parsed once, and only if some filter needs it."""

    def __init__(self, record: EventRecord) -> None:
        self.record = record

    @cached_property
    def data(self) -> Any:
        return parse_jsonb_text(self.record["data"])


@dataclass(frozen=True, slots=True)
class TextQuestion:
    """A predicate only PostgreSQL answers faithfully, about one event's message."""

    kind: TextQuestionKind
    needle: str


class CompiledFilter:
    """An EventFilter prepared for matching many events: sets built and documents parsed once."""

    def __init__(self, event_filter: EventFilter, *, ascii_lower_is_faithful: bool = True) -> None:
        self.event_filter = event_filter
        self._equal = [
            (column, value)
            for column in ("component", "environment", "email")
            if (value := getattr(event_filter, column)) is not None
        ]
        self._component_in = _as_set(event_filter.component_in)
        self._environment_in = _as_set(event_filter.environment_in)
        self._created_from = _as_bound(event_filter.created_from)
        self._created_to = _as_bound(event_filter.created_to)
        # The document exactly as SQL receives it (the same encoding, then parsed as jsonb would).
        self._data_contains = (
            parse_jsonb_text(encode_json(event_filter.data_contains))
            if event_filter.data_contains is not None
            else None
        )
        self._ascii_lower_is_faithful = ascii_lower_is_faithful
        contains = event_filter.message_contains
        self._contains_lowered = contains.lower() if contains is not None and contains.isascii() else None

    def matches_locally(self, event: CandidateEvent) -> bool:
        """False if a predicate Python can decide fails; True leaves `text_questions` to ask."""
        record = event.record
        event_filter = self.event_filter
        for column, value in self._equal:
            if record[column] != value:
                return False
        # An empty *_in list matches nothing, as `= ANY('{}')` does.
        if self._component_in is not None and record["component"] not in self._component_in:
            return False
        if self._environment_in is not None and record["environment"] not in self._environment_in:
            return False
        substring = event_filter.message_substring
        if substring is not None and substring not in record["message"]:
            return False
        if self._created_from is not None and not record["created_at"] >= self._created_from:
            return False
        if self._created_to is not None and not record["created_at"] < self._created_to:
            return False
        if self._data_contains is not None and not jsonb_contains(event.data, self._data_contains):
            return False
        if self._ascii_contains_decidable(record["message"]):
            return self._contains_lowered in record["message"].lower()  # type: ignore[operator]
        return True

    def text_questions(self, event: CandidateEvent) -> list[TextQuestion]:
        """What PostgreSQL must still confirm for this event to match (after `matches_locally`)."""
        questions: list[TextQuestion] = []
        contains = self.event_filter.message_contains
        if contains is not None and not self._ascii_contains_decidable(event.record["message"]):
            questions.append(TextQuestion("contains_ci", contains))
        if self.event_filter.search is not None:
            questions.append(TextQuestion("search", self.event_filter.search))
        return questions

    def _ascii_contains_decidable(self, message: str) -> bool:
        # For ASCII text every database's lower() maps A-Z to a-z like Python's, unless the hub
        # found otherwise (a Turkish ctype); beyond ASCII, lower() depends on the database's ctype.
        return self._ascii_lower_is_faithful and self._contains_lowered is not None and message.isascii()


def _as_set(values: tuple[str, ...] | None) -> frozenset[str] | None:
    return frozenset(values) if values is not None else None


def _as_bound(value: datetime | None) -> datetime | None:
    """A filter bound as asyncpg sends it: naive means local time, datetime.max/min are ±infinity."""
    if value is None:
        return None
    if value == datetime.max:
        return datetime.max.replace(tzinfo=UTC)
    if value == datetime.min:
        return datetime.min.replace(tzinfo=UTC)
    return value.astimezone(UTC)


async def ascii_lower_is_faithful(connection: asyncpg.Connection) -> bool:
    """Whether this database's lower() maps ASCII letters exactly as Python's str.lower() does."""
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return await connection.fetchval("SELECT lower($1::text) = $2::text", upper, upper.lower())


async def answer_text_questions(
    connection: asyncpg.Connection, questions: Sequence[tuple[str, TextQuestion]]
) -> list[bool]:
    """PostgreSQL's answer to each (message, question), in order, in one round trip."""
    if not questions:
        return []
    messages: dict[str, int] = {}
    message_indexes = [messages.setdefault(message, len(messages) + 1) for message, _ in questions]
    rows = await connection.fetch(
        "SELECT CASE q.kind "
        "WHEN 'search' THEN to_tsvector('simple', m.message) @@ websearch_to_tsquery('simple', q.needle) "
        "ELSE strpos(lower(m.message), lower(q.needle)) > 0 END AS answer "
        "FROM unnest($2::int[], $3::text[], $4::text[]) WITH ORDINALITY "
        "AS q(message_index, kind, needle, position) "
        "JOIN unnest($1::text[]) WITH ORDINALITY AS m(message, message_index) "
        "ON m.message_index = q.message_index "
        "ORDER BY q.position",
        list(messages),
        message_indexes,
        [question.kind for _, question in questions],
        [question.needle for _, question in questions],
    )
    return [bool(row["answer"]) for row in rows]
