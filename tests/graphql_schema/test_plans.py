"""Compiled plans answer exactly as the ordinary executor does (graphql_schema/plans.py).

A corpus of documents runs through two apps on the same database, one with plans and one with
GRAPHQL_COMPILED_PLANS off, and the answers must be the same bytes. The corpus is every GraphQL
document in the test suite and the README, and generated ones: random selections with aliases,
fragments, directives and variables, and requests that fail (bad sizes, cursors, filters, inputs).
"""

import ast
import json
import random
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from graphql import (
    ListTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    TypeNode,
    parse,
    validate,
)
from strawberry.types.arguments import convert_arguments

import graphql_schema.http_transport
from api.settings import Settings
from db.engine import Database
from graphql_schema.plans import _BACKREF, _strawberry_arguments, compile_plan
from graphql_schema.schema import schema as sdl_schema
from tests.graphql_schema.support import T0, event_row, seed
from tests.support import ROOT, app_sharing_services

SEED = 1130
COMPONENTS = ["order", "auth", "billing"]
EMAILS = ["ade@example.com", "bo@example.com"]


# --- The corpus ----------------------------------------------------------------------------------


def _strings_in(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "{" in node.value:
            yield node.value


def _readme_documents() -> Iterator[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    yield from re.findall(r"```graphql\n(.*?)```", text, flags=re.S)
    for body in re.findall(r"-d '(\{.*?\})'", text, flags=re.S):
        try:
            query = json.loads(body).get("query")
        except (ValueError, AttributeError):
            continue
        if isinstance(query, str):
            yield query


def written_documents() -> list[str]:
    """Every valid query or mutation document the tests and the README send."""
    found: dict[str, None] = {}
    sources = [*sorted((ROOT / "tests").rglob("*.py"))]
    texts = [text for path in sources for text in _strings_in(path)]
    for text in [*texts, *_readme_documents()]:
        try:
            document = parse(text)
        except Exception:  # not GraphQL: most strings are not
            continue
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if not operations or any(op.operation is OperationType.SUBSCRIPTION for op in operations):
            continue
        if validate(sdl_schema._schema, document):
            continue
        found[text] = None
    return list(found)


def _variable_value(type_node: TypeNode, name: str, rng: random.Random, event_ids: list[str]) -> Any:
    if isinstance(type_node, NonNullTypeNode):
        return _variable_value(type_node.type, name, rng, event_ids)
    if isinstance(type_node, ListTypeNode):
        return [_variable_value(type_node.type, name, rng, event_ids) for _ in range(2)]
    type_name = type_node.name.value
    lowered = name.lower()
    values: dict[str, Any] = {
        "String": (
            rng.choice(EMAILS)
            if "email" in lowered
            else rng.choice(COMPONENTS)
            if "component" in lowered
            else None
            if lowered in {"after", "before"}
            else rng.choice(["order", "prod", "failed"])
        ),
        "Int": rng.choice([0, 1, 3, 50]),
        "Boolean": rng.random() < 0.5,
        "ID": rng.choice(event_ids),
        "DateTime": T0.isoformat(),
        "JSON": {"plan": "pro"},
        "EventFilter": rng.choice(
            [{}, {"component": "order"}, {"emailIn": EMAILS}, {"messageContains": "n"}]
        ),
        "EventOrder": rng.choice(["NEWEST_FIRST", "OLDEST_FIRST"]),
        "RecordEventInput": _record_input(rng),
    }
    return values.get(type_name)


def _record_input(rng: random.Random, **overrides: Any) -> dict[str, Any]:
    # A key of its own: the second run of a mutation replays the first, so both answers agree.
    value = {
        "component": rng.choice(COMPONENTS),
        "environment": "production",
        "email": rng.choice(EMAILS),
        "message": f"recorded {rng.randint(0, 10**6)}",
        "data": {"n": rng.randint(0, 9), "big": 2**70, "f": 1.5},
        "idempotencyKey": f"plan-{uuid.uuid4()}",
    }
    value.update(overrides)
    return value


def requests_for(text: str, rng: random.Random, event_ids: list[str]) -> Iterator[dict[str, Any]]:
    """One request per operation in `text`, its variables made up from their types and names."""
    for definition in parse(text).definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        variables = {
            var.variable.name.value: _variable_value(var.type, var.variable.name.value, rng, event_ids)
            for var in definition.variable_definitions or ()
        }
        request: dict[str, Any] = {"query": text, "variables": variables}
        if definition.name is not None:
            request["operationName"] = definition.name.value
        yield request


EVENT_FIELDS = [
    "id",
    "component",
    "environment",
    "email",
    "message",
    "data",
    "createdAt",
    "cursor",
    "__typename",
    "actor { email eventCount firstSeenAt lastSeenAt __typename }",
]


def _event_selection(rng: random.Random, depth: int = 0) -> str:
    chosen = rng.sample(EVENT_FIELDS, rng.randint(1, len(EVENT_FIELDS)))
    parts = []
    for name in chosen:
        alias = f"a{rng.randint(0, 3)}_{name.split()[0].strip('_')}: " if rng.random() < 0.2 else ""
        directive = rng.choice(
            ["", "", "", " @skip(if: $skip)", " @include(if: $include)", " @include(if: true)"]
        )
        parts.append(f"{alias}{name}{directive}")
    if rng.random() < 0.3:
        parts.append("...EventParts")
    if rng.random() < 0.3:
        parts.append(f"... on Node {{ id {rng.choice(['', '__typename'])} }}")
    if rng.random() < 0.2:
        parts.append("... @skip(if: $skip) { message }")
    return " ".join(parts)


def generated_request(rng: random.Random, cursors: list[str], event_ids: list[str]) -> dict[str, Any]:
    """A random `events` query: selections, aliases, fragments, directives and arguments, valid or not."""
    arguments = []
    if rng.random() < 0.7:
        arguments.append(f"first: {rng.choice([0, 1, 2, 3, 5, 10, 50, 500, 501, -1])}")
    if rng.random() < 0.1:
        arguments.append(f"last: {rng.choice([1, 3, 600])}")
    if rng.random() < 0.3:
        arguments.append("after: $after")
    if rng.random() < 0.15:
        arguments.append(f"before: {json.dumps(rng.choice([*cursors, 'not-a-cursor']))}")
    if rng.random() < 0.5:
        arguments.append("filter: $filter")
    if rng.random() < 0.4:
        arguments.append(f"orderBy: {rng.choice(['NEWEST_FIRST', 'OLDEST_FIRST'])}")
    connection = []
    if rng.random() < 0.7:
        connection.append(f"nodes {{ {_event_selection(rng)} }}")
    if rng.random() < 0.4:
        connection.append(f"edges {{ cursor node {{ {_event_selection(rng)} }} }}")
    if rng.random() < 0.4:
        connection.append("pageInfo { hasNextPage hasPreviousPage startCursor endCursor __typename }")
    if rng.random() < 0.3:
        connection.append("totalCount")
    if not connection or rng.random() < 0.2:
        connection.append("__typename")
    args = f"({', '.join(arguments)})" if arguments else ""
    fields = f"events{args} {{ {' '.join(connection)} }}"
    if rng.random() < 0.3:
        fields += (
            f" second: events(first: 2, orderBy: OLDEST_FIRST) {{ nodes {{ {_event_selection(rng)} }} }}"
        )
    if rng.random() < 0.1:
        fields += " __typename"
    if rng.random() < 0.2:
        fields += f" one: event(id: $id) {{ {_event_selection(rng)} }}"
    if rng.random() < 0.15:
        fields += f" who: actor(email: {json.dumps(rng.choice([*EMAILS, 'nobody@x.io', 'a' + chr(0)]))}) "
        fields += "{ email eventCount firstSeenAt lastSeenAt }"
    body = f"{{ {fields} }}"
    if "EventParts" in fields:
        body += " fragment EventParts on Event { message createdAt }"
    # Only the variables used: an unused one makes the document invalid.
    declared = {
        "skip": "Boolean!",
        "include": "Boolean!",
        "after": "String",
        "filter": "EventFilter",
        "id": "ID!",
    }
    used = [f"${name}: {kind}" for name, kind in declared.items() if f"${name}" in body]
    query = f"query Generated({', '.join(used)}) {body}" if used else f"query Generated {body}"
    filters = [
        None,
        {"component": rng.choice(COMPONENTS)},
        {"emailIn": EMAILS, "from": T0.isoformat()},
        {"search": "order"},
        {"dataContains": {"n": rng.randint(0, 3)}},
        {"component": "a\u0000b"},
        {"dataContains": [1]},
        {"to": "0001-01-01T00:00:00+01:00"},
    ]
    return {
        "query": query,
        "variables": {
            "skip": rng.random() < 0.5,
            "include": rng.random() < 0.5,
            "after": rng.choice([None, None, *cursors, *cursors, "bad"]),
            # The last three filters are refused.
            "filter": rng.choice(filters) if rng.random() < 0.2 else rng.choice(filters[:-3]),
            "id": rng.choice([*event_ids[:5], str(uuid.uuid4()), "not-a-uuid"]),
        },
    }


def generated_mutations(rng: random.Random) -> Iterator[dict[str, Any]]:
    selection = "id component email message data createdAt cursor __typename"
    one = f"mutation($input: RecordEventInput!) {{ recordEvent(input: $input) {{ {selection} }} }}"
    many = f"mutation($inputs: [RecordEventInput!]!) {{ recordEvents(inputs: $inputs) {{ {selection} }} }}"
    two = (
        f"mutation($a: RecordEventInput!, $b: RecordEventInput!) {{ first: recordEvent(input: $a) {{ id }} "
        f"second: recordEvent(input: $b) {{ {selection} }} __typename }}"
    )
    yield {"query": one, "variables": {"input": _record_input(rng)}}
    yield {"query": one, "variables": {"input": _record_input(rng, email="not-an-email")}}
    yield {"query": one, "variables": {"input": _record_input(rng, idempotencyKey="has space")}}
    yield {"query": many, "variables": {"inputs": [_record_input(rng) for _ in range(3)]}}
    yield {"query": many, "variables": {"inputs": [_record_input(rng), _record_input(rng, message=" ")]}}
    yield {"query": two, "variables": {"a": _record_input(rng), "b": _record_input(rng)}}
    yield {
        "query": two,
        "variables": {"a": _record_input(rng), "b": _record_input(rng, data={"x": "\u0000"})},
    }


# --- The comparison ------------------------------------------------------------------------------


@pytest.fixture
async def unplanned(app: FastAPI, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    ordinary = app_sharing_services(app, settings.model_copy(update={"graphql_compiled_plans": False}))
    transport = httpx.ASGITransport(app=ordinary)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def planned_runs(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each planned execution answered (True) or handed over to the executor (False)."""
    runs: list[bool] = []
    original = graphql_schema.http_transport.execute_plan

    async def counting(*args: Any, **kwargs: Any) -> Any:
        data = await original(*args, **kwargs)
        runs.append(data is not None)
        return data

    monkeypatch.setattr(graphql_schema.http_transport, "execute_plan", counting)
    return runs


@pytest.fixture
async def seeded(database: Database) -> list[str]:
    rng = random.Random(SEED)
    rows = [
        event_row(
            component=rng.choice(COMPONENTS),
            email=rng.choice([*EMAILS, None]),
            message=f"event {index} {rng.choice(['order failed', 'login', 'shipped'])}",
            data={"n": index % 4, "plan": rng.choice(["pro", "free"]), "big": 2**70 + index, "f": 0.1},
            created_at=T0.replace(second=index % 7),  # ties on createdAt, broken by id
        )
        for index in range(40)
    ]
    return await seed(database, rows)


async def _answers(
    first: httpx.AsyncClient, second: httpx.AsyncClient, request: dict[str, Any]
) -> tuple[tuple[int, str, bytes], tuple[int, str, bytes]]:
    answers = []
    for client in (first, second):
        response = await client.post("/graphql", json=request)
        answers.append((response.status_code, response.headers["content-type"], response.content))
    return answers[0], answers[1]


def _recorded_anew(answer: tuple[int, str, bytes]) -> tuple[int, str, bytes]:
    """The answer with what differs between two recordings of one event (a mutation without an
    idempotency key records it twice) made the same: ids, createdAt and cursors."""
    status, media_type, body = answer
    masked = re.sub(rb'"(id|createdAt|cursor)":"[^"]*"', rb'"\1":"..."', body)
    return status, media_type, masked


@pytest.mark.slow  # sweeps every document the suite and README hold (the full run's job)
async def test_every_written_document_answers_the_same_planned_or_not(
    client: httpx.AsyncClient, unplanned: httpx.AsyncClient, seeded: list[str], planned_runs: list[bool]
) -> None:
    rng = random.Random(SEED)
    documents = written_documents()
    assert len(documents) > 30, "the corpus finds the suite's documents"
    differences = []
    for text in documents:
        for request in requests_for(text, rng, seeded):
            # Mutations run planned first, then replay through the executor (same idempotency keys).
            planned, ordinary = await _answers(client, unplanned, request)
            if _recorded_anew(planned) != _recorded_anew(ordinary):
                differences.append((request["query"][:300], planned[2][:300], ordinary[2][:300]))
    assert differences == []
    assert planned_runs.count(True) > 10, "plans answered a good part of the corpus"


@pytest.mark.slow  # sweeps hundreds of generated documents (the full run's job)
async def test_generated_queries_answer_the_same_planned_or_not(
    client: httpx.AsyncClient, unplanned: httpx.AsyncClient, seeded: list[str], planned_runs: list[bool]
) -> None:
    rng = random.Random(SEED)
    cursors = [
        edge["cursor"]
        for edge in (
            await client.post("/graphql", json={"query": "{ events(first: 40) { edges { cursor } } }"})
        ).json()["data"]["events"]["edges"]
    ][::7]
    differences = []
    for _ in range(300):
        request = generated_request(rng, cursors, seeded)
        planned, ordinary = await _answers(client, unplanned, request)
        if planned != ordinary:
            differences.append((request, planned, ordinary))
    assert differences == []
    # Both kinds ran: plans that answered, and requests that failed and were handed over.
    assert planned_runs.count(True) > 100 and planned_runs.count(False) > 10


async def test_mutations_answer_the_same_planned_or_not_and_never_write_twice(
    client: httpx.AsyncClient, unplanned: httpx.AsyncClient, database: Database, planned_runs: list[bool]
) -> None:
    rng = random.Random(SEED)
    differences = []
    for request in generated_mutations(rng):
        for first, second in ((client, unplanned), (unplanned, client)):
            request = json.loads(json.dumps(request))  # the same events, under fresh keys each time
            for values in request["variables"].values():
                for item in values if isinstance(values, list) else [values]:
                    if item.get("idempotencyKey") != "has space":
                        item["idempotencyKey"] = f"plan-{uuid.uuid4()}"
            one, other = await _answers(first, second, request)
            if one != other:
                differences.append((request, one, other))
    assert differences == []
    assert True in planned_runs and False in planned_runs
    async with database.transaction() as connection:
        keys = await connection.fetchval("SELECT count(*) FROM idempotency_keys")
        events = await connection.fetchval("SELECT count(*) FROM events")
    assert events == keys, "every event was recorded once, whichever path recorded it"


def test_the_hot_operations_get_a_plan_and_others_do_not() -> None:
    graphql_schema = sdl_schema._schema

    def plan_for(text: str) -> object:
        document = parse(text)
        operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
        return compile_plan(graphql_schema, document, operation)

    assert plan_for("{ events(first: 50) { nodes { id component createdAt data } } }") is not None
    assert plan_for("{ events { edges { cursor node { ...on Node { id } } } pageInfo { endCursor } } }")
    assert plan_for("mutation { recordEvent(input: {component: \"a\", environment: \"b\", "
                    "email: \"a@b.co\", message: \"m\", data: {}}) { id } }") is not None  # fmt: skip
    assert plan_for("{ events { nodes { actor { email eventCount lastSeenAt } } } }") is not None
    assert plan_for('{ event(id: "x") { id actor { email } } actor(email: "a@b.co") { email } }')
    assert plan_for("{ events { nodes { actor { events { id } } } } }") is None  # an argument
    assert plan_for('{ node(id: "x") { id } }') is None  # an interface
    assert plan_for("{ __schema { types { name } } }") is None
    assert plan_for("{ events { nodes { id } } nodes(ids: []) { id } }") is None


async def test_a_planned_mutation_that_fails_halfway_writes_each_event_once(
    client: httpx.AsyncClient, database: Database, planned_runs: list[bool]
) -> None:
    # No idempotency keys: were the first event recorded again on the way to the error, nothing
    # would notice but the count.
    rng = random.Random(SEED)
    two = (
        "mutation($a: RecordEventInput!, $b: RecordEventInput!) "
        "{ first: recordEvent(input: $a) { id } second: recordEvent(input: $b) { id } }"
    )
    a = _record_input(rng, idempotencyKey=None)
    b = _record_input(rng, idempotencyKey=None, email="not-an-email")
    response = await client.post("/graphql", json={"query": two, "variables": {"a": a, "b": b}})
    body = response.json()
    assert body["data"] is None and body["errors"][0]["path"] == ["second"]
    assert planned_runs == [False]  # the plan recorded the first event, then handed over
    async with database.transaction() as connection:
        assert await connection.fetchval("SELECT count(*) FROM events") == 1


_INPUT = {"component": "c", "environment": "e", "email": "a@b.co", "message": "m", "data": {"n": 2**70}}


@pytest.mark.parametrize(
    ("root", "name", "arguments"),
    [
        ("mutation", "recordEvent", {"input": {**_INPUT, "idempotencyKey": None}}),
        ("mutation", "recordEvent", {"input": {**_INPUT, "idempotencyKey": "k-1"}}),
        ("mutation", "recordEvents", {"inputs": [{**_INPUT, "idempotencyKey": None}, _INPUT]}),
        ("query", "event", {"id": str(uuid.uuid4())}),
        ("query", "actor", {"email": "a@b.co"}),
        # An enum argument is Strawberry's to convert (to the Python enum): the fallback's answer.
        ("query", "events", {"first": 3, "orderBy": "OLDEST_FIRST"}),
    ],
)
def test_arguments_reach_resolvers_as_strawberry_converts_them(
    root: str, name: str, arguments: dict[str, Any]
) -> None:
    graphql = sdl_schema._schema
    field = (graphql.mutation_type if root == "mutation" else graphql.query_type).fields[name]  # type: ignore[union-attr]
    expected = convert_arguments(
        arguments,
        field.extensions[_BACKREF].arguments,
        sdl_schema.schema_converter.scalar_registry,
        sdl_schema.config,
    )
    assert _strawberry_arguments(field, arguments, sdl_schema) == expected
