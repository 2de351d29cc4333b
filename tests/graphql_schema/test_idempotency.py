"""idempotencyKey on recordEvent / recordEvents: one event per key, a conflict is BAD_USER_INPUT."""

import asyncio
from typing import Any

import httpx

from db.engine import Database
from tests.graphql_schema.support import graphql, graphql_data
from tests.support import valid_event

RECORD = "mutation($input: RecordEventInput!) { recordEvent(input: $input) { id message } }"
RECORD_MANY = "mutation($inputs: [RecordEventInput!]!) { recordEvents(inputs: $inputs) { id } }"


def _input(key: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {**valid_event(**overrides), **({"idempotencyKey": key} if key else {})}


async def _count(database: Database) -> int:
    async with database.transaction() as connection:
        return await connection.fetchval("SELECT count(*) FROM events")


async def test_a_retried_record_event_returns_the_first_event(
    client: httpx.AsyncClient, database: Database
) -> None:
    first = await graphql_data(client, RECORD, {"input": _input("g-1")})
    again = await graphql_data(client, RECORD, {"input": _input("g-1")})
    assert again == first
    assert await _count(database) == 1


async def test_concurrent_retries_write_one_event(client: httpx.AsyncClient, database: Database) -> None:
    answers = await asyncio.gather(
        *(graphql_data(client, RECORD, {"input": _input("g-burst")}) for _ in range(20))
    )
    assert len({answer["recordEvent"]["id"] for answer in answers}) == 1
    assert await _count(database) == 1


async def test_the_same_key_with_another_event_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    await graphql_data(client, RECORD, {"input": _input("g-1")})
    body = await graphql(client, RECORD, {"input": _input("g-1", message="other")})
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "idempotencyKey"}
    assert await _count(database) == 1


async def test_a_malformed_key_is_refused_before_anything_is_written(
    client: httpx.AsyncClient, database: Database
) -> None:
    body = await graphql(client, RECORD_MANY, {"inputs": [_input("fine"), _input("not fine")]})
    assert body["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "idempotencyKey",
        "index": 1,
    }
    assert await _count(database) == 0


async def test_record_events_replays_keyed_items(client: httpx.AsyncClient, database: Database) -> None:
    inputs = [_input("m-1", message="a"), _input(None, message="b")]
    first = await graphql_data(client, RECORD_MANY, {"inputs": inputs})
    again = await graphql_data(client, RECORD_MANY, {"inputs": inputs})
    assert again["recordEvents"][0] == first["recordEvents"][0]
    assert again["recordEvents"][1] != first["recordEvents"][1]
    assert await _count(database) == 3
