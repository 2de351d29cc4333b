"""recordEvent / recordEvents: the shared validation rules, all-or-nothing batches, commit first."""

from typing import Any

import asyncpg
import httpx
import pytest

from db.engine import Database
from tests.graphql_schema.support import event_count, graphql, graphql_data, only_error

RECORD_EVENT = """
mutation ($input: RecordEventInput!) {
  recordEvent(input: $input) { id component environment email message data createdAt }
}
"""
RECORD_EVENTS = """
mutation ($inputs: [RecordEventInput!]!) { recordEvents(inputs: $inputs) { id message data } }
"""


def valid_input(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "component": "order",
        "environment": "production",
        "email": "ade@example.com",
        "message": "order failed",
        "data": {"age": 20},
    }
    event.update(overrides)
    return event


async def test_record_event_returns_the_committed_event(client: httpx.AsyncClient, database_url: str) -> None:
    data = await graphql_data(client, RECORD_EVENT, {"input": valid_input(data={"big": 2**70})})
    event = data["recordEvent"]
    assert {key: event[key] for key in ("component", "environment", "email", "message")} == {
        "component": "order",
        "environment": "production",
        "email": "ade@example.com",
        "message": "order failed",
    }
    assert event["data"] == {"big": 2**70}
    assert event["createdAt"].endswith("+00:00")
    # Another connection sees it: the answer came after the commit.
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT message FROM events WHERE id = $1::uuid", event["id"])
    finally:
        await connection.close()


INVALID_INPUTS = [
    ({"email": "not-an-email"}, "email", "Invalid email address."),
    ({"email": ""}, "email", "Invalid email address."),
    ({"email": "ade@example"}, "email", "Invalid email address."),
    ({"email": "ade@example.com\nmore"}, "email", "Invalid email address."),
    ({"component": ""}, "component", "Component can not be empty."),
    ({"component": " \t\n"}, "component", "Component can not be empty."),
    ({"environment": ""}, "environment", "Environment can not be empty."),
    ({"environment": "   "}, "environment", "Environment can not be empty."),
    ({"message": ""}, "message", "Message can not be empty."),
    ({"message": "  "}, "message", "Message can not be empty."),
    ({"data": "a string"}, "data", None),
    ({"data": ["a", "list"]}, "data", None),
    ({"data": 42}, "data", None),
    ({"component": "ord\x00er"}, "component", None),
    ({"message": "nul \x00 inside"}, "message", None),
    ({"data": {"key": "nul \x00"}}, "data", None),
    ({"data": {"nul \x00 key": 1}}, "data", None),
]


@pytest.mark.parametrize(("overrides", "field", "reason"), INVALID_INPUTS, ids=repr)
async def test_record_event_rejects_what_rest_rejects_naming_the_field(
    client: httpx.AsyncClient,
    database: Database,
    overrides: dict[str, Any],
    field: str,
    reason: str | None,
) -> None:
    body = await graphql(client, RECORD_EVENT, {"input": valid_input(**overrides)})
    error = only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    if reason is not None:
        assert error["message"] == reason
    assert body["data"] is None
    assert await event_count(database) == 0


async def test_record_event_rejects_rules_inline_in_the_query_text_too(
    client: httpx.AsyncClient, database: Database
) -> None:
    body = await graphql(
        client,
        'mutation { recordEvent(input: {component: "c", environment: "e", email: "x@example.com", '
        'message: "m", data: "not an object"}) { id } }',
    )
    assert only_error(body)["extensions"] == {"code": "BAD_USER_INPUT", "field": "data"}
    assert await event_count(database) == 0


@pytest.mark.parametrize("missing", ["component", "environment", "email", "message", "data"])
async def test_record_event_requires_every_field(
    client: httpx.AsyncClient, database: Database, missing: str
) -> None:
    event = valid_input()
    del event[missing]
    body = await graphql(client, RECORD_EVENT, {"input": event})
    assert missing in only_error(body)["message"]
    assert await event_count(database) == 0


async def test_record_event_refuses_null_data(client: httpx.AsyncClient, database: Database) -> None:
    body = await graphql(client, RECORD_EVENT, {"input": valid_input(data=None)})
    assert "data" in only_error(body)["message"]
    assert await event_count(database) == 0


async def test_record_events_stores_a_batch_in_input_order(
    client: httpx.AsyncClient, database: Database
) -> None:
    inputs = [valid_input(message=f"event {index}", data={"index": index}) for index in range(5)]
    data = await graphql_data(client, RECORD_EVENTS, {"inputs": inputs})
    assert [event["message"] for event in data["recordEvents"]] == [f"event {i}" for i in range(5)]
    assert [event["data"] for event in data["recordEvents"]] == [{"index": i} for i in range(5)]
    assert await event_count(database) == 5


async def test_record_events_with_no_inputs_records_nothing(client: httpx.AsyncClient) -> None:
    assert (await graphql_data(client, RECORD_EVENTS, {"inputs": []}))["recordEvents"] == []


async def test_record_events_with_one_bad_input_writes_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    inputs = [valid_input(message=f"event {index}") for index in range(4)]
    inputs[2] = valid_input(environment=" ")
    body = await graphql(client, RECORD_EVENTS, {"inputs": inputs})
    error = only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "environment", "index": 2}
    assert error["message"] == "Environment can not be empty."
    assert await event_count(database) == 0


async def test_record_events_over_the_batch_limit_is_refused(
    client: httpx.AsyncClient, database: Database, app: Any
) -> None:
    limit = app.state.settings.max_batch_events
    body = await graphql(client, RECORD_EVENTS, {"inputs": [valid_input()] * (limit + 1)})
    error = only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "inputs"}
    # The batch route's own text: one rule, one wording, whichever door a batch comes through.
    assert error["message"] == f"A batch may hold at most {limit} events; this one holds {limit + 1}."
    assert await event_count(database) == 0
    data = await graphql_data(client, RECORD_EVENTS, {"inputs": [valid_input()] * limit})
    assert len(data["recordEvents"]) == limit
