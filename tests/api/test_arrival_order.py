"""Arrival order is kept: the events of one request, and the single writes one group commit took
together, are listed (and paged by cursor) in the order they arrived, and their ids (UUIDv7 made
from the commit-order stamp) ascend in that order too."""

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from db.validation import NewEvent
from tests.graphql_schema.support import graphql_data
from tests.support import valid_event

RECORD_EVENTS = "mutation($inputs: [RecordEventInput!]!) { recordEvents(inputs: $inputs) { id } }"
EVENTS = """
query($order: EventOrder!, $first: Int!, $after: String) {
  events(orderBy: $order, first: $first, after: $after) {
    edges { cursor node { message } }
    pageInfo { hasNextPage }
  }
}
"""
# The batch of the report, and one long enough that a random order would not pass by luck.
BATCHES = [["one", "two", "three"], [f"event {index:02}" for index in range(20)]]


async def rest_listing(client: httpx.AsyncClient) -> list[str]:
    """Messages as GET /api/events/ lists them (oldest first, the contract's order)."""
    response = await client.get("/api/events/")
    assert response.status_code == 200
    return [event["message"] for event in response.json()["events"]]


async def graphql_listing(client: httpx.AsyncClient, order: str) -> list[str]:
    """Messages as one `events` page lists them in `order`."""
    data = await graphql_data(client, EVENTS, {"order": order, "first": 500})
    return [edge["node"]["message"] for edge in data["events"]["edges"]]


async def cursor_walk(client: httpx.AsyncClient, order: str) -> list[str]:
    """Messages read one page of one event at a time, each page after the previous one's cursor."""
    messages: list[str] = []
    after: str | None = None
    while True:
        data = await graphql_data(client, EVENTS, {"order": order, "first": 1, "after": after})
        edges = data["events"]["edges"]
        messages += [edge["node"]["message"] for edge in edges]
        if not data["events"]["pageInfo"]["hasNextPage"]:
            return messages
        after = edges[-1]["cursor"]


async def assert_listed_in_order(client: httpx.AsyncClient, arrived: list[str]) -> None:
    """Every listing, in either direction and page by page, shows `arrived` in its order."""
    assert await rest_listing(client) == arrived
    assert await graphql_listing(client, "OLDEST_FIRST") == arrived
    assert await graphql_listing(client, "NEWEST_FIRST") == arrived[::-1]
    assert await cursor_walk(client, "OLDEST_FIRST") == arrived
    assert await cursor_walk(client, "NEWEST_FIRST") == arrived[::-1]


@pytest.mark.parametrize("messages", BATCHES, ids=["three", "twenty"])
async def test_a_rest_batch_is_listed_in_input_order(client: httpx.AsyncClient, messages: list[str]) -> None:
    response = await client.post("/api/events/batch", json=[valid_event(message=m) for m in messages])
    assert response.status_code == 201
    await assert_listed_in_order(client, messages)


@pytest.mark.parametrize("messages", BATCHES, ids=["three", "twenty"])
async def test_record_events_is_listed_in_input_order(client: httpx.AsyncClient, messages: list[str]) -> None:
    await graphql_data(client, RECORD_EVENTS, {"inputs": [valid_event(message=m) for m in messages]})
    await assert_listed_in_order(client, messages)


async def test_an_ndjson_batch_is_listed_in_line_order(client: httpx.AsyncClient) -> None:
    messages = BATCHES[1]
    body = "\n".join(json.dumps(valid_event(message=message)) for message in messages)
    response = await client.post(
        "/api/events/batch", content=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 201
    await assert_listed_in_order(client, messages)


async def test_single_writes_committed_together_are_listed_in_arrival_order(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = app.state.event_writer
    assert writer.coalescing, "group commit must be on for this test"
    arrived: list[str] = []
    record = writer.record

    async def record_noting_arrival(event: NewEvent) -> Any:
        # Nothing awaits between here and the writer's queue: this is the order it queues them in.
        arrived.append(event.message)
        return await record(event)

    monkeypatch.setattr(writer, "record", record_noting_arrival)
    statements_before = writer.stats.statements
    messages = [f"single {index:02}" for index in range(40)]
    responses = await asyncio.gather(
        *(client.post("/api/events/", json=valid_event(message=message)) for message in messages)
    )
    assert [response.status_code for response in responses] == [201] * len(messages)
    assert sorted(arrived) == messages
    # They did share commits: fewer statements than events, so some commit held several.
    assert writer.stats.statements - statements_before < len(messages)
    await assert_listed_in_order(client, arrived)
    stamps = [response.json()["created_at"] for response in responses]
    assert len(set(stamps)) == len(stamps), "two events share a created_at"
    id_of = {response.json()["message"]: uuid.UUID(response.json()["id"]) for response in responses}
    ids_in_arrival_order = [id_of[message] for message in arrived]
    assert ids_in_arrival_order == sorted(ids_in_arrival_order)
    assert {event_id.version for event_id in ids_in_arrival_order} == {7}


@pytest.mark.parametrize("door", ["rest", "graphql"])
async def test_a_batchs_ids_ascend_in_input_order(client: httpx.AsyncClient, door: str) -> None:
    inputs = [valid_event(message=message) for message in BATCHES[1]]
    if door == "rest":
        response = await client.post("/api/events/batch", json=inputs)
        assert response.status_code == 201
        ids = [uuid.UUID(event["id"]) for event in response.json()["events"]]
    else:
        data = await graphql_data(client, RECORD_EVENTS, {"inputs": inputs})
        ids = [uuid.UUID(event["id"]) for event in data["recordEvents"]]
    assert ids == sorted(ids)
    assert {event_id.version for event_id in ids} == {7}
