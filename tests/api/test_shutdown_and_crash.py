"""SIGTERM finishes what is in flight and exits 0; SIGKILL loses nothing that was acknowledged."""

import asyncio
import signal
import threading
import time

import asyncpg
import httpx
import pytest

from tests.support import running_service, service_env, valid_event

pytestmark = pytest.mark.slow


async def _seed(database_url: str, count: int) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO events (component, environment, email, message, data, created_at) "
            "SELECT 'order', 'production', 'ade@example.com', repeat('m', 200) || n, "
            "jsonb_build_object('n', n), now() + n * interval '1 microsecond' "
            "FROM generate_series(1, $1) AS n",
            count,
        )
    finally:
        await connection.close()


async def _stored_ids(database_url: str) -> set[str]:
    connection = await asyncpg.connect(database_url)
    try:
        return {str(row["id"]) for row in await connection.fetch("SELECT id FROM events")}
    finally:
        await connection.close()


def test_sigterm_finishes_an_in_flight_stream_then_exits_zero(database_url: str) -> None:
    asyncio.run(_seed(database_url, 20_000))
    with running_service(service_env(DATABASE_URL=database_url)) as (base_url, process):
        with httpx.Client(base_url=base_url, timeout=60) as http:
            with http.stream("GET", "/api/events/") as response:
                chunks = response.iter_bytes()
                first = next(chunks)  # the answer has started ...
                process.send_signal(signal.SIGTERM)  # ... when the stop is asked for
                body = first + b"".join(chunks)
        assert process.wait(30) == 0
    assert len(httpx.Response(200, content=body).json()["events"]) == 20_000


def test_sigkill_under_write_load_loses_no_acknowledged_event(database_url: str) -> None:
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    with running_service(service_env(DATABASE_URL=database_url)) as (base_url, process):

        def write() -> None:
            with httpx.Client(base_url=base_url, timeout=10) as http:
                while not stop.is_set():
                    try:
                        response = http.post("/api/events/", json=valid_event())
                    except httpx.HTTPError as error:  # the kill cuts connections: expected
                        failures.append(type(error).__name__)
                        return
                    if response.status_code == 201:
                        acknowledged.append(response.json()["id"])

        writers = [threading.Thread(target=write) for _ in range(8)]
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.kill()  # SIGKILL, in the middle of the load
        process.wait(10)
        stop.set()
        for writer in writers:
            writer.join(15)

    assert len(acknowledged) >= 200
    stored = asyncio.run(_stored_ids(database_url))
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events are missing"
