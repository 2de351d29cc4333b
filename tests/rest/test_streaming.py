"""Large GETs through a real uvicorn: complete, ordered, valid JSON, and never blocking the server."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson

from tests.rest.rows import epoch_text

EVENT_COUNT = 20_000
BASE = datetime(2021, 1, 1, tzinfo=UTC)


async def seed(database_url: str, count: int, padding: int = 0) -> None:
    """`count` events in one statement, inserted newest first so insertion order is not the answer."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO events (component, environment, email, message, data, created_at) "
            "SELECT 'stream', 'test', 'bulk@example.com', 'event ' || g, "
            "       jsonb_build_object('n', g, 'pad', repeat('x', $2)), "
            "       timestamptz '2021-01-01 00:00:00+00' + g * interval '1 millisecond' "
            "FROM generate_series($1::int, 1, -1) AS g",
            count,
            padding,
        )
    finally:
        await connection.close()


async def test_unfiltered_get_streams_every_event_in_order(live_server: str, database_url: str) -> None:
    await seed(database_url, EVENT_COUNT)
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as client:
        response = await client.get("/api/events/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    events = response.json()["events"]  # the whole body is one valid JSON document
    assert len(events) == EVENT_COUNT
    assert [event["message"] for event in events] == [f"event {n}" for n in range(1, EVENT_COUNT + 1)]
    assert [event["data"]["n"] for event in events] == list(range(1, EVENT_COUNT + 1))
    for n in (1, 2, 999, 1000, 1001, 12_345, EVENT_COUNT):
        assert events[n - 1]["created_at"] == epoch_text(BASE + timedelta(milliseconds=n))
    assert len({event["id"] for event in events}) == EVENT_COUNT
    assert all(
        list(event) == ["component", "data", "email", "environment", "message", "id", "created_at"]
        for event in events
    )


async def test_filtered_get_streams_only_matches_in_order(live_server: str, database_url: str) -> None:
    await seed(database_url, EVENT_COUNT)
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as client:
        response = await client.get(
            "/api/events/", params={"message": "event 1999", "from_date": "2021-01-01"}
        )
    assert response.status_code == 200
    assert [event["message"] for event in response.json()["events"]] == [
        "event 1999",
        *(f"event 1999{n}" for n in range(10)),
    ]


async def test_health_answers_promptly_while_a_large_get_streams_slowly(
    live_server: str, database_url: str
) -> None:
    # ~25 MB of events: far more than socket buffers hold, so the server must still be sending
    # while we read slowly; the health checks must not wait for it.
    await seed(database_url, EVENT_COUNT, padding=1_200)
    received = 0
    async with (
        httpx.AsyncClient(base_url=live_server, timeout=60) as slow,
        httpx.AsyncClient(base_url=live_server, timeout=10) as quick,
    ):
        async with slow.stream("GET", "/api/events/") as response:
            assert response.status_code == 200
            pieces = response.aiter_raw(4096)
            body = bytearray(await anext(pieces))
            for _ in range(3):
                await asyncio.sleep(0.2)  # let the server fill the socket buffers and pause
                started = time.monotonic()
                health = await quick.get("/api/health")
                elapsed = time.monotonic() - started
                assert health.status_code == 200
                assert health.json() == {"status": "healthy"}
                assert elapsed < 2.0, f"health took {elapsed:.2f} s while a stream was open"
                for _ in range(4):
                    body += await anext(pieces)
            received_before_drain = len(body)
            async for piece in pieces:
                body += piece
                received += len(piece)
    assert received > 10_000_000, "the stream had finished before the health checks: test proves nothing"
    assert received_before_drain < 1_000_000
    events = orjson.loads(bytes(body))["events"]
    assert len(events) == EVENT_COUNT
    assert events[0]["message"] == "event 1" and events[-1]["message"] == f"event {EVENT_COUNT}"


async def test_streams_abandoned_by_clients_give_their_database_connections_back(
    live_server: str, database_url: str
) -> None:
    # More abandoned streams than the pool has connections (DB_POOL_MAX_SIZE defaults to 10): if
    # an abandoned stream kept its connection, the requests after them would wait for one in vain.
    await seed(database_url, EVENT_COUNT, padding=1_200)
    for _ in range(15):
        async with httpx.AsyncClient(base_url=live_server, timeout=30) as client:
            async with client.stream("GET", "/api/events/") as response:
                assert response.status_code == 200
                await anext(response.aiter_raw(4096))
        # Leaving both blocks closes the connection mid-body.
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as client:
        started = time.monotonic()
        response = await client.get("/api/events/", params={"message": "event 20000"})
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert [event["message"] for event in response.json()["events"]] == ["event 20000"]
    assert elapsed < 5.0, f"a filtered GET took {elapsed:.2f} s after abandoned streams"
