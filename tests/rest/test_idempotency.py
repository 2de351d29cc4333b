"""Idempotency-Key on REST writes: retries return the first event and write nothing."""

import asyncio

import asyncpg
import httpx
import pytest

from tests.support import valid_event


async def _count(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval("SELECT count(*) FROM events")
    finally:
        await connection.close()


async def test_a_retry_returns_the_original_event_with_200_and_writes_nothing(
    client: httpx.AsyncClient, database_url: str
) -> None:
    headers = {"Idempotency-Key": "order-42-failed"}
    first = await client.post("/api/events/", json=valid_event(), headers=headers)
    again = await client.post("/api/events/", json=valid_event(), headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await _count(database_url) == 1


async def test_the_same_key_with_another_event_is_a_422_and_writes_nothing(
    client: httpx.AsyncClient, database_url: str
) -> None:
    headers = {"Idempotency-Key": "k"}
    await client.post("/api/events/", json=valid_event(), headers=headers)
    other = await client.post("/api/events/", json=valid_event(message="different"), headers=headers)
    assert other.status_code == 422
    assert "different request" in other.json()["message"]
    assert await _count(database_url) == 1


async def test_without_a_key_identical_posts_still_make_two_events(
    client: httpx.AsyncClient, database_url: str
) -> None:
    for _ in range(2):
        assert (await client.post("/api/events/", json=valid_event())).status_code == 201
    assert await _count(database_url) == 2


@pytest.mark.parametrize("key", [b"", b"has space", b"x" * 256, "caf\u00e9".encode()])
async def test_a_malformed_key_is_a_400(client: httpx.AsyncClient, key: bytes, database_url: str) -> None:
    response = await client.post("/api/events/", json=valid_event(), headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert "idempotency key" in response.json()["message"]
    assert await _count(database_url) == 0


async def test_twenty_concurrent_retries_through_a_live_server_write_exactly_one_event(
    live_server: str, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        responses = await asyncio.gather(
            *(
                http.post("/api/events/", json=valid_event(), headers={"Idempotency-Key": "burst"})
                for _ in range(20)
            )
        )
    assert sorted(response.status_code for response in responses) == [200] * 19 + [201]
    assert len({response.json()["id"] for response in responses}) == 1
    assert await _count(database_url) == 1


async def test_batch_items_with_keys_are_recorded_once(client: httpx.AsyncClient, database_url: str) -> None:
    batch = [
        {**valid_event(message="one"), "idempotency_key": "b-1"},
        {**valid_event(message="two"), "idempotency_key": "b-2"},
        valid_event(message="unkeyed"),
    ]
    first = await client.post("/api/events/batch", json=batch)
    retry = await client.post("/api/events/batch", json=batch)
    assert first.status_code == retry.status_code == 201
    first_ids = [event["id"] for event in first.json()["events"]]
    retry_ids = [event["id"] for event in retry.json()["events"]]
    assert retry_ids[:2] == first_ids[:2] and retry_ids[2] != first_ids[2]
    assert await _count(database_url) == 4  # the unkeyed item is recorded again, as asked


async def test_a_batch_item_with_a_bad_key_is_reported_by_index(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/events/batch", json=[valid_event(), {**valid_event(), "idempotency_key": 7}]
    )
    assert response.status_code == 400
    assert response.json()["indexes"] == [1]
    assert "1.idempotency_key" in response.json()["errors"]
