"""The filter is defined once (db/filters.py); SQL, the live matcher and both doors follow it.

The first tests enumerate the definition and fail when any path lacks a field or a kind of
condition. The others generate events and filters (seeded, so a failure can be replayed) and
require the live matcher, GraphQL, the REST list and the REST export to select exactly what SQL
selects.
"""

import json
import random
import string
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from db.engine import Database
from db.filters import (
    FILTER_FIELDS,
    AnyOf,
    AtOrAfter,
    Before,
    Condition,
    Equals,
    EventFilter,
    FilterField,
    JsonContains,
    SqlParams,
    Substring,
    SubstringIgnoringCase,
    WebSearch,
    filter_conditions,
)
from db.live_feed.matching import (
    MATCHER_COMPILERS,
    CandidateEvent,
    CompiledFilter,
    answer_text_questions,
    ascii_lower_is_faithful,
)
from db.live_feed.notifications import as_event_record
from graphql_schema.inputs import GRAPHQL_VALUE_TYPES
from graphql_schema.schema import schema
from rest.filter_params import REST_FORMS
from tests.graphql_schema.support import T0, event_row, seed

CONDITION_KINDS = Condition.__subclasses__()
SEED = 20261130
# Texts that make case folding and full-text parsing interesting (İ, K, ß lower differently
# in PostgreSQL and Python; %, _ and quotes are literal in substrings).
WORDS = ["order", "Order", "FAILED", "failed", "shipped", "login", "İstanbul", "KELVIN", "\u212a",
         "straße", "STRASSE", "Élan", "élan", "100%_done", "a_b", "twice", "payment", "-", "or"]  # fmt: skip
COMPONENTS = ["order", "Order", "auth", "billing", "İstanbul", "x y"]
ENVIRONMENTS = ["production", "staging", "dev"]
EMAILS = ["a@example.com", "b@example.com", "A@example.com"]
SCALARS: list[Any] = [0, 1, 1.5, 10, 10.0, -2, 2**70, True, False, None, "eu", "us", "1", ""]


# --- Every path knows every field and kind ---------------------------------------------------


def test_every_kind_of_condition_has_sql_a_matcher_and_a_form_in_each_door() -> None:
    assert set(CONDITION_KINDS) == set(VALUE_MAKERS)  # this file generates values for every kind
    for kind in CONDITION_KINDS:
        assert kind in MATCHER_COMPILERS, f"{kind.__name__} has no live matcher"
        assert kind("a_column").sql("$1"), f"{kind.__name__} has no SQL"
        assert kind.value_type in GRAPHQL_VALUE_TYPES, f"{kind.__name__} values have no GraphQL type"
        assert kind.value_type in REST_FORMS, f"{kind.__name__} values have no REST form"


@pytest.mark.parametrize("spec", FILTER_FIELDS, ids=lambda spec: spec.name)
def test_each_field_reaches_sql_the_matcher_and_the_doors_that_name_it(spec: FilterField) -> None:
    value = VALUE_MAKERS[type(spec.condition)](random.Random(SEED), spec.condition, SAMPLE_ROWS)
    event_filter = EventFilter(**{spec.name: value})
    params = SqlParams()
    assert len(filter_conditions(event_filter, params)) == 1
    assert params.values, "the value reaches the SQL as a parameter"
    compiled = CompiledFilter(event_filter)
    assert compiled._checks or compiled._questions, "the matcher evaluates the field"

    graphql_input = schema._schema.type_map["EventFilter"]
    if spec.graphql is not None:
        assert graphql_input.fields[spec.graphql].description == spec.description
    assert set(graphql_input.fields) == {s.graphql for s in FILTER_FIELDS if s.graphql is not None}


async def test_the_rest_list_documents_exactly_the_fields_with_a_rest_name(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    parameters = document["paths"]["/api/events/"]["get"]["parameters"]
    query = {parameter["name"] for parameter in parameters if parameter["in"] == "query"}
    assert query == {spec.rest for spec in FILTER_FIELDS if spec.rest is not None}


def export_name(spec: FilterField) -> str:
    """The export's parameter for a field: the legacy REST name where it has one, else the GraphQL one."""
    name = spec.rest or spec.graphql
    assert name is not None, f"{spec.name} has no name a client could send to the export"
    return name


async def test_the_export_documents_every_field_of_the_definition(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    parameters = document["paths"]["/api/events/export"]["get"]["parameters"]
    query = {parameter["name"]: parameter for parameter in parameters if parameter["in"] == "query"}
    assert set(query) == {export_name(spec) for spec in FILTER_FIELDS} | {"format", "after"}
    for spec in FILTER_FIELDS:
        assert query[export_name(spec)]["description"].startswith(spec.description)


# --- Generated events and filters --------------------------------------------------------------


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))


def _document(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.3:
        return {rng.choice("abcn"): _document(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if depth < 2 and roll < 0.45:
        return [_document(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(SCALARS)


def generated_rows(rng: random.Random, count: int) -> list[dict[str, Any]]:
    return [
        event_row(
            component=rng.choice(COMPONENTS),
            environment=rng.choice(ENVIRONMENTS),
            email=rng.choice(EMAILS),
            message=_text(rng),
            data={key: _document(rng) for key in rng.sample("abcdn", rng.randint(0, 4))},
            created_at=T0 + timedelta(seconds=rng.randint(0, 600), microseconds=rng.randint(0, 999_999)),
        )
        for _ in range(count)
    ]


SAMPLE_ROWS = generated_rows(random.Random(SEED), 5)


def _part_of(rng: random.Random, value: Any) -> Any:
    """A document `value` contains, or, now and then, one it does not."""
    if isinstance(value, dict):
        keys = rng.sample(sorted(value), rng.randint(0, len(value)))
        return {key: _part_of(rng, value[key]) for key in keys}
    if isinstance(value, list) and value:
        return [_part_of(rng, item) for item in rng.sample(value, rng.randint(0, len(value)))]
    return value if rng.random() < 0.8 else rng.choice(SCALARS)


def _column_text(rng: random.Random, condition: Condition, rows: list[dict[str, Any]]) -> str:
    return rng.choice(rows)[condition.column]


def _piece(rng: random.Random, condition: Condition, rows: list[dict[str, Any]]) -> str:
    text = _column_text(rng, condition, rows)
    start = rng.randint(0, len(text) - 1)
    piece = text[start : start + rng.randint(1, 8)]
    return rng.choice(
        [piece, piece.upper(), piece.lower(), rng.choice(WORDS), rng.choice(string.ascii_letters)]
    )


def _web_search(rng: random.Random, condition: Condition, rows: list[dict[str, Any]]) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
    form = rng.choice(["{}", '"{}"', "{} or {}", "-{}", "{} -{}"])
    return form.format(*words, *words)[:60]


def _instant(rng: random.Random, condition: Condition, rows: list[dict[str, Any]]) -> datetime:
    moment: datetime = rng.choice(rows)[condition.column]
    return moment + rng.choice([timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1)])


VALUE_MAKERS = {
    Equals: lambda rng, condition, rows: _column_text(rng, condition, rows),
    AnyOf: lambda rng, condition, rows: tuple(
        _column_text(rng, condition, rows) for _ in range(rng.randint(0, 3))
    ),
    Substring: _piece,
    SubstringIgnoringCase: _piece,
    WebSearch: _web_search,
    AtOrAfter: _instant,
    Before: _instant,
    JsonContains: lambda rng, condition, rows: _part_of(rng, rng.choice(rows)[condition.column]),
}


def generated_filter(rng: random.Random, rows: list[dict[str, Any]]) -> EventFilter:
    chosen = rng.sample(FILTER_FIELDS, rng.choice([1, 1, 2, 3]))
    return EventFilter(
        **{spec.name: VALUE_MAKERS[type(spec.condition)](rng, spec.condition, rows) for spec in chosen}
    )


async def ids_in_sql(database: Database, event_filter: EventFilter) -> set[str]:
    params = SqlParams()
    conditions = filter_conditions(event_filter, params)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    async with database.transaction() as connection:
        rows = await connection.fetch(f"SELECT id FROM events {where}", *params.values)
    return {str(row["id"]) for row in rows}


@pytest.fixture
async def generated(database: Database) -> list[dict[str, Any]]:
    rows = generated_rows(random.Random(SEED), 60)
    await seed(database, rows)
    return rows


async def test_the_live_matcher_selects_what_sql_selects_for_generated_filters(
    database: Database, generated: list[dict[str, Any]]
) -> None:
    async with database.transaction() as connection:
        records = [as_event_record(row) for row in await connection.fetch("SELECT * FROM events")]
        faithful = await ascii_lower_is_faithful(connection)
    rng = random.Random(SEED)
    disagreements = []
    selected_sizes = set()
    for _ in range(250):
        event_filter = generated_filter(rng, generated)
        compiled = CompiledFilter(event_filter, ascii_lower_is_faithful=faithful)
        candidates = [(record, CandidateEvent(record)) for record in records]
        local = [(record, event) for record, event in candidates if compiled.matches_locally(event)]
        questions = [
            [(record[question.condition.column], question) for question in compiled.text_questions(event)]
            for record, event in local
        ]
        async with database.transaction() as connection:
            answers = iter(await answer_text_questions(connection, [q for asks in questions for q in asks]))
        live = {
            str(record["id"])
            for (record, _), asks in zip(local, questions, strict=True)
            if all([next(answers) for _ in asks])
        }
        in_sql = await ids_in_sql(database, event_filter)
        selected_sizes.add(len(in_sql))
        if live != in_sql:
            disagreements.append((event_filter, len(live), len(in_sql)))
    assert disagreements == []
    # The generated filters select none, some and many events: the comparison means something.
    assert 0 in selected_sizes and max(selected_sizes) > 10 and len(selected_sizes) > 10


def _graphql_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return list(value) if isinstance(value, tuple) else value


def _rest_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value)
    return list(value) if isinstance(value, tuple) else value


async def test_each_door_selects_what_sql_selects_for_each_field_it_offers(
    database: Database, client: httpx.AsyncClient, generated: list[dict[str, Any]]
) -> None:
    rng = random.Random(SEED + 1)
    disagreements = []
    for spec in FILTER_FIELDS:
        for _ in range(8):
            value = VALUE_MAKERS[type(spec.condition)](rng, spec.condition, generated)
            if not value and not isinstance(value, dict):
                continue  # over REST an empty parameter means "no filter"; not this test's subject
            expected = await ids_in_sql(database, EventFilter(**{spec.name: value}))
            if spec.graphql is not None:
                response = await client.post(
                    "/graphql",
                    json={
                        "query": "query($f: EventFilter) { events(filter: $f, first: 500) { nodes { id } } }",
                        "variables": {"f": {spec.graphql: _graphql_value(value)}},
                    },
                )
                nodes = response.json()["data"]["events"]["nodes"]
                if {node["id"] for node in nodes} != expected:
                    disagreements.append(("graphql", spec.name, value))
            if spec.rest is not None:
                response = await client.get("/api/events/", params={spec.rest: _rest_value(value)})
                if {event["id"] for event in response.json()["events"]} != expected:
                    disagreements.append(("rest", spec.name, value))
            # The export offers every field.
            response = await client.get("/api/events/export", params={export_name(spec): _rest_value(value)})
            exported = {json.loads(line)["id"] for line in response.content.splitlines()}
            if response.status_code != 200 or exported != expected:
                disagreements.append(("export", spec.name, value))
    assert disagreements == []
