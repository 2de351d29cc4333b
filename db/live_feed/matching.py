"""`EventFilter` applied to one event in Python, agreeing with the SQL of db/filters.py field by field.

The live feed cannot run a WHERE clause per subscriber per event, so the same semantics are
evaluated here. Where Python cannot be sure to agree with PostgreSQL (full-text search, and
case-insensitive matching outside ASCII, which depends on the database's ctype), the question
is put to PostgreSQL itself, batched: `answer_text_questions`.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from db.filters import (
    AnyOf,
    AtOrAfter,
    Before,
    Condition,
    Equals,
    EventFilter,
    JsonContains,
    Substring,
    SubstringIgnoringCase,
    WebSearch,
    set_fields,
)
from db.live_feed.notifications import EventRecord


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
    """One event being matched; a JSON column is parsed once, and only if some filter needs it."""

    def __init__(self, record: EventRecord) -> None:
        self.record = record
        self._parsed: dict[str, Any] = {}

    def json(self, column: str) -> Any:
        if column not in self._parsed:
            self._parsed[column] = parse_jsonb_text(self.record[column])
        return self._parsed[column]


@dataclass(frozen=True, slots=True)
class TextQuestion:
    """A predicate only PostgreSQL answers faithfully, about the text in one of an event's columns."""

    condition: SubstringIgnoringCase | WebSearch
    needle: str


# A local check: True if the event may match (False decides it does not).
LocalCheck = Callable[[CandidateEvent], bool]


class CompiledFilter:
    """An EventFilter prepared for matching many events: one check per set field, built once.

    Each field's condition (db/filters.py) is turned into a Python check here; `MATCHER_COMPILERS` must
    have an entry for every kind of condition (tests/db/test_filter_definition.py enumerates them).
    """

    def __init__(self, event_filter: EventFilter, *, ascii_lower_is_faithful: bool = True) -> None:
        self.event_filter = event_filter
        self._checks: list[LocalCheck] = []
        self._questions: list[Callable[[CandidateEvent], TextQuestion | None]] = []
        for spec, value in set_fields(event_filter):
            compile_condition = MATCHER_COMPILERS[type(spec.condition)]
            compile_condition(self, spec.condition, value, ascii_lower_is_faithful)

    def matches_locally(self, event: CandidateEvent) -> bool:
        """False if a predicate Python can decide fails; True leaves `text_questions` to ask."""
        return all(check(event) for check in self._checks)

    def text_questions(self, event: CandidateEvent) -> list[TextQuestion]:
        """What PostgreSQL must still confirm for this event to match (after `matches_locally`)."""
        return [question for ask in self._questions if (question := ask(event)) is not None]


def _equals(compiled: CompiledFilter, condition: Condition, value: Any, _: bool) -> None:
    column = condition.column
    compiled._checks.append(lambda event: event.record[column] == value)


def _any_of(compiled: CompiledFilter, condition: Condition, value: Any, _: bool) -> None:
    column, allowed = condition.column, frozenset(value)  # empty: nothing matches, as `= ANY('{}')`
    compiled._checks.append(lambda event: event.record[column] in allowed)


def _substring(compiled: CompiledFilter, condition: Condition, value: Any, _: bool) -> None:
    column = condition.column
    compiled._checks.append(lambda event: value in event.record[column])


def _substring_ignoring_case(
    compiled: CompiledFilter, condition: Condition, value: Any, ascii_lower_is_faithful: bool
) -> None:
    assert isinstance(condition, SubstringIgnoringCase)
    column, question = condition.column, TextQuestion(condition, value)
    # For ASCII text every database's lower() maps A-Z to a-z like Python's, unless the hub found
    # otherwise (a Turkish ctype); beyond ASCII, lower() depends on the database's ctype.
    lowered = value.lower() if ascii_lower_is_faithful and value.isascii() else None

    def check(event: CandidateEvent) -> bool:
        text = event.record[column]
        return lowered is None or not text.isascii() or lowered in text.lower()

    def ask(event: CandidateEvent) -> TextQuestion | None:
        return question if lowered is None or not event.record[column].isascii() else None

    compiled._checks.append(check)
    compiled._questions.append(ask)


def _web_search(compiled: CompiledFilter, condition: Condition, value: Any, _: bool) -> None:
    assert isinstance(condition, WebSearch)
    question = TextQuestion(condition, value)
    compiled._questions.append(lambda event: question)


def _at_or_after(compiled: CompiledFilter, condition: Condition, value: Any, _: bool) -> None:
    column, bound = condition.column, _as_bound(value)
    compiled._checks.append(lambda event: event.record[column] >= bound)


def _before(compiled: CompiledFilter, condition: Condition, value: Any, _: bool) -> None:
    column, bound = condition.column, _as_bound(value)
    compiled._checks.append(lambda event: event.record[column] < bound)


def _json_contains(compiled: CompiledFilter, condition: Condition, value: Any, _: bool) -> None:
    # The document exactly as SQL receives it (the same encoding, then parsed as jsonb would).
    column, wanted = condition.column, parse_jsonb_text(condition.sql_value(value))
    compiled._checks.append(lambda event: jsonb_contains(event.json(column), wanted))


MATCHER_COMPILERS: dict[type[Condition], Callable[[CompiledFilter, Condition, Any, bool], None]] = {
    Equals: _equals,
    AnyOf: _any_of,
    Substring: _substring,
    SubstringIgnoringCase: _substring_ignoring_case,
    WebSearch: _web_search,
    AtOrAfter: _at_or_after,
    Before: _before,
    JsonContains: _json_contains,
}


def _as_bound(value: datetime) -> datetime:
    """A filter bound as asyncpg sends it: naive means local time, datetime.max/min are ±infinity."""
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
    """PostgreSQL's answer to each (text, question), in order, in one round trip.

    Each kind is answered by the very expression db/filters.py puts in a WHERE clause, applied
    to the event's text instead of its column.
    """
    if not questions:
        return []
    texts: dict[str, int] = {}
    text_indexes = [texts.setdefault(text, len(texts) + 1) for text, _ in questions]
    rows = await connection.fetch(
        f"SELECT {_ANSWER_SQL} AS answer "
        "FROM unnest($2::int[], $3::text[], $4::text[]) WITH ORDINALITY "
        "AS q(text_index, kind, needle, position) "
        "JOIN unnest($1::text[]) WITH ORDINALITY AS t(text, text_index) "
        "ON t.text_index = q.text_index "
        "ORDER BY q.position",
        list(texts),
        text_indexes,
        [type(question.condition).__name__ for _, question in questions],
        [question.needle for _, question in questions],
    )
    return [bool(row["answer"]) for row in rows]


_ANSWER_SQL = "CASE q.kind {} END".format(
    " ".join(
        f"WHEN '{kind.__name__}' THEN {kind('t.text').sql('q.needle')}"
        for kind in (SubstringIgnoringCase, WebSearch)
    )
)
