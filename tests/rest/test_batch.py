"""POST /api/events/batch: JSON arrays and NDJSON, all-or-nothing, every bad item reported."""

import asyncio
import json
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from db.filters import EventFilter
from tests.support import valid_event

BATCH = "/api/events/batch"
NDJSON = {"Content-Type": "application/x-ndjson"}
EVENT_KEYS = ["component", "data", "email", "environment", "message", "id", "created_at"]


async def stored_messages(database_url: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT message FROM events ORDER BY message")
        return [row["message"] for row in rows]
    finally:
        await connection.close()


def ndjson(*items: Any) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


async def test_a_json_array_is_recorded_and_returned_in_input_order(
    client: httpx.AsyncClient, database_url: str
) -> None:
    events = [valid_event(message=f"event {index}", data={"index": index}) for index in range(5)]
    response = await client.post(BATCH, json=events)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    returned = response.json()["events"]
    assert [list(event) for event in returned] == [EVENT_KEYS] * 5
    assert [event["message"] for event in returned] == [f"event {index}" for index in range(5)]
    assert [event["data"] for event in returned] == [{"index": index} for index in range(5)]
    assert await stored_messages(database_url) == [f"event {index}" for index in range(5)]
    # Each is the same event GET /api/events/{id} serves.
    assert (await client.get(f"/api/events/{returned[3]['id']}")).json() == returned[3]


async def test_ndjson_is_recorded_with_blank_lines_and_crlf_ignored(
    client: httpx.AsyncClient, database_url: str
) -> None:
    body = (
        b"\n"
        + json.dumps(valid_event(message="one")).encode()
        + b"\r\n\r\n   \n"
        + json.dumps(valid_event(message="two")).encode()
    )  # no final newline either
    response = await client.post(BATCH, content=body, headers=NDJSON)
    assert response.status_code == 201, response.text
    assert [event["message"] for event in response.json()["events"]] == ["one", "two"]
    assert await stored_messages(database_url) == ["one", "two"]


async def test_return_minimal_answers_the_count_and_ids_in_input_order(
    client: httpx.AsyncClient, database_url: str
) -> None:
    events = [valid_event(message=f"event {index}") for index in range(3)]
    response = await client.post(f"{BATCH}?return=minimal", json=events)
    assert response.status_code == 201
    body = response.json()
    assert list(body) == ["count", "ids"]
    assert body["count"] == 3
    for index, event_id in enumerate(body["ids"]):
        assert (await client.get(f"/api/events/{event_id}")).json()["message"] == f"event {index}"


async def test_an_unknown_return_value_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{BATCH}?return=everything", json=[valid_event()])
    assert response.status_code == 400
    assert "return" in response.json()["errors"]


async def test_every_invalid_item_is_reported_by_index_and_nothing_is_written(
    client: httpx.AsyncClient, database_url: str
) -> None:
    events: list[Any] = [valid_event(message=f"event {index}") for index in range(8)]
    del events[0]["data"]
    events[1]["component"] = 42
    events[3] = valid_event(email="not-an-email")
    events[5] = 42
    events[6] = valid_event(message="   ")
    response = await client.post(BATCH, json=events)
    assert response.status_code == 400
    assert response.json() == {
        "message": "Input payload validation failed",
        "errors": {
            "0.data": "'data' is a required property",
            "1.component": "42 is not of type 'string'",
            "3.email": "Invalid email address.",
            "5": "42 is not of type 'object'",
            "6.message": "Message can not be empty.",
        },
        "indexes": [0, 1, 3, 5, 6],
    }
    assert await stored_messages(database_url) == []


async def test_an_item_with_a_bad_event_and_a_bad_key_reports_both(
    client: httpx.AsyncClient, database_url: str
) -> None:
    item = {**valid_event(email="not-an-email"), "idempotency_key": "has space"}
    response = await client.post(BATCH, json=[valid_event(), item])
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"1.email", "1.idempotency_key"}
    assert errors["1.email"] == "Invalid email address."
    assert await stored_messages(database_url) == []


async def test_ndjson_reports_lines_that_are_not_json_by_their_event_index(
    client: httpx.AsyncClient, database_url: str
) -> None:
    body = ndjson(valid_event()) + b"\n" + b'{"component": "order",\n' + ndjson(valid_event(email="x"))
    response = await client.post(BATCH, content=body, headers=NDJSON)
    assert response.status_code == 400
    assert response.json() == {
        "message": "Input payload validation failed",
        "errors": {"1": "Line 3 is not valid JSON.", "2.email": "Invalid email address."},
        "indexes": [1, 2],
    }
    assert await stored_messages(database_url) == []


async def test_more_than_the_maximum_is_refused_with_413_and_nothing_written(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    limit = app.state.settings.max_batch_events
    too_many = [valid_event()] * (limit + 1)
    response = await client.post(BATCH, json=too_many)
    assert response.status_code == 413
    assert response.json() == {
        "message": f"A batch may hold at most {limit} events; this one holds {limit + 1}."
    }
    response = await client.post(BATCH, content=ndjson(*too_many), headers=NDJSON)
    assert response.status_code == 413
    assert await stored_messages(database_url) == []

    response = await client.post(f"{BATCH}?return=minimal", json=[valid_event()] * limit)
    assert response.status_code == 201
    assert response.json()["count"] == limit


@pytest.mark.parametrize(
    ("content", "headers"),
    [(b"[]", {"Content-Type": "application/json"}), (b"", NDJSON), (b"\n \n", NDJSON)],
    ids=["empty array", "empty ndjson", "blank ndjson"],
)
async def test_an_empty_batch_records_nothing_and_answers_201(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str]
) -> None:
    response = await client.post(BATCH, content=content, headers=headers)
    assert response.status_code == 201
    assert response.json() == {"events": []}


@pytest.mark.parametrize(
    ("content", "headers", "text"),
    [
        (json.dumps(valid_event()).encode(), {"Content-Type": "application/json"}, "is not of type 'array'"),
        (b'"events"', {"Content-Type": "application/json"}, "'events' is not of type 'array'"),
        (b"[]", {"Content-Type": "text/plain"}, "None is not of type 'array'"),
        (b"[]", {}, "None is not of type 'array'"),
    ],
    ids=["object", "string", "text/plain", "no content type"],
)
async def test_a_body_that_is_not_an_array_is_a_shape_error(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str], text: str
) -> None:
    response = await client.post(BATCH, content=content, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Input payload validation failed"
    assert list(body["errors"]) == [""]
    assert body["errors"][""].endswith(text)


async def test_malformed_json_is_the_contract_s_malformed_body_error(client: httpx.AsyncClient) -> None:
    response = await client.post(BATCH, content=b"[{", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {
        "message": "The browser (or proxy) sent a request that this server could not understand."
    }


async def test_batches_are_announced_on_the_live_feed_like_single_events(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with app.state.event_hub.subscribe(EventFilter(component="batch-feed")) as subscription:
        events = [valid_event(component="batch-feed", message=f"event {index}") for index in range(3)]
        assert (await client.post(BATCH, json=events)).status_code == 201
        received = [await asyncio.wait_for(anext(subscription), 10) for _ in range(3)]
    assert [record["message"] for record in received] == ["event 0", "event 1", "event 2"]


async def test_the_batch_route_needs_the_write_scope(
    auth_client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    events = [valid_event()]
    assert (await auth_client.post(BATCH, json=events)).status_code == 401
    read = await auth_client.post(BATCH, json=events, headers={"X-API-Key": keys["read"]})
    assert read.status_code == 403
    write = await auth_client.post(BATCH, json=events, headers={"X-API-Key": keys["write"]})
    assert write.status_code == 201


async def test_the_openapi_document_describes_the_batch_route(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/api/openapi.json")).json()["paths"][BATCH]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert {"201", "400", "413"} <= set(operation["responses"])
    assert '"indexes"' in operation["description"] and "return=minimal" in operation["description"]
