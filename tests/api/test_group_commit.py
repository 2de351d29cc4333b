"""Group commit through the doors: concurrent POSTs and recordEvent calls share commits, each
answer carries its own event, a 201 always means committed, and shutdown loses nothing queued."""

import asyncio
import signal
import time

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from db.embedded import EmbeddedPostgres
from tests.support import running_service, service_env, start_postgres, stop_postgres, valid_event

RECORD_EVENT = "mutation ($input: RecordEventInput!) { recordEvent(input: $input) { id message } }"


async def _fetch(database_url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(query)
    finally:
        await connection.close()


async def _stored(database_url: str) -> dict[str, str]:
    """message -> id of every stored event (messages are unique in these tests)."""
    rows = await _fetch(database_url, "SELECT id::text AS id, message FROM events")
    return {row["message"]: row["id"] for row in rows}


async def _transactions_that_wrote(database_url: str) -> int:
    # xmin is the inserting transaction's id: one value per commit.
    rows = await _fetch(database_url, "SELECT count(DISTINCT xmin::text) AS n FROM events")
    return rows[0]["n"]


async def test_concurrent_posts_share_commits_and_each_gets_its_own_event(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    messages = [f"concurrent {index}" for index in range(200)]
    before = app.state.event_writer.stats.statements
    responses = await asyncio.gather(
        *(client.post("/api/events/", json=valid_event(message=message)) for message in messages)
    )
    statements = app.state.event_writer.stats.statements - before
    assert [response.status_code for response in responses] == [201] * 200
    assert [response.json()["message"] for response in responses] == messages
    stored = await _stored(database_url)
    assert len(stored) == 200
    assert {
        message: response.json()["id"] for message, response in zip(messages, responses, strict=True)
    } == stored
    assert statements < 200, statements
    assert await _transactions_that_wrote(database_url) == statements


async def test_rest_and_graphql_writes_share_the_writer(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    before = app.state.event_writer.stats.statements
    rest = [client.post("/api/events/", json=valid_event(message=f"rest {i}")) for i in range(50)]
    graphql = [
        client.post(
            "/graphql",
            json={"query": RECORD_EVENT, "variables": {"input": valid_event(message=f"graphql {i}")}},
        )
        for i in range(50)
    ]
    responses = await asyncio.gather(*rest, *graphql)
    assert [response.json()["message"] for response in responses[:50]] == [f"rest {i}" for i in range(50)]
    assert [response.json()["data"]["recordEvent"]["message"] for response in responses[50:]] == [
        f"graphql {i}" for i in range(50)
    ]
    assert len(await _stored(database_url)) == 100
    assert app.state.event_writer.stats.statements - before < 100


async def test_concurrent_posts_to_a_live_server_land_exactly_once(
    live_server: str, database_url: str
) -> None:
    messages = [f"live {index}" for index in range(200)]
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=live_server, limits=limits, timeout=30) as http:
        responses = await asyncio.gather(
            *(http.post("/api/events/", json=valid_event(message=message)) for message in messages)
        )
    assert [response.status_code for response in responses] == [201] * 200
    assert [response.json()["message"] for response in responses] == messages
    stored = await _stored(database_url)
    assert {
        message: response.json()["id"] for message, response in zip(messages, responses, strict=True)
    } == stored
    assert await _transactions_that_wrote(database_url) < 200


@pytest.mark.slow
def test_sigterm_commits_the_writes_waiting_in_a_window(database_url: str) -> None:
    env = service_env(DATABASE_URL=database_url, GROUP_COMMIT_MAX_WAIT_MS="1500")
    messages = [f"pending {index}" for index in range(20)]

    async def post_all(base_url: str, process: object) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            posts = [
                asyncio.create_task(http.post("/api/events/", json=valid_event(message=message)))
                for message in messages
            ]
            await asyncio.sleep(0.5)  # every request is in, most waiting for their window to close
            still_waiting = sum(not post.done() for post in posts)
            process.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
            assert still_waiting >= 10, still_waiting
            return await asyncio.gather(*posts)

    with running_service(env) as (base_url, process):
        responses = asyncio.run(post_all(base_url, process))
        assert process.wait(30) == 0
    assert [response.status_code for response in responses] == [201] * 20
    assert [response.json()["message"] for response in responses] == messages
    assert set(asyncio.run(_stored(database_url))) == set(messages)


# --- the database dies under a batch ---


async def _wait_for_blocked_insert(url: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = await _fetch(
            url,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'activity-service' "
            "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO events%'",
        )
        if rows:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the batch never reached the locked table")


async def _post_concurrently(base_url: str, messages: list[str], during: object) -> list[httpx.Response]:
    """POST every message at once; run `during()` (a coroutine function) while they are pending."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        posts = [
            asyncio.create_task(http.post("/api/events/", json=valid_event(message=message)))
            for message in messages
        ]
        await during()  # type: ignore[operator]
        return await asyncio.gather(*posts)


def test_database_killed_under_a_batch_answers_its_callers_503_never_201(
    own_server: EmbeddedPostgres,
) -> None:
    url = own_server.url
    env = service_env(
        DATABASE_URL=url,
        DB_CONNECT_TIMEOUT_S="2",
        DB_ACQUIRE_TIMEOUT_S="2",
        GROUP_COMMIT_MAX_WAIT_MS="3000",  # a wide window: the second phase kills the server inside it
    )
    acknowledged: dict[str, str] = {}
    refused: list[str] = []

    def tally(messages: list[str], responses: list[httpx.Response]) -> None:
        for message, response in zip(messages, responses, strict=True):
            assert response.status_code in (201, 503), response.text
            if response.status_code == 201:
                acknowledged[message] = response.json()["id"]
            else:
                refused.append(message)

    with running_service(env) as (base_url, _process), httpx.Client(base_url=base_url) as http:
        first = http.post("/api/events/", json=valid_event(message="before"))
        assert first.status_code == 201
        acknowledged["before"] = first.json()["id"]

        # 1. Mid-statement: the batch's INSERT waits on a lock when the server goes down.
        async def phase_one() -> list[httpx.Response]:
            blocker = await asyncpg.connect(url)
            await blocker.execute("BEGIN; LOCK TABLE events IN SHARE MODE")

            async def kill_while_blocked() -> None:
                await _wait_for_blocked_insert(url)
                await asyncio.sleep(0.3)  # the rest queue behind the blocked batch
                # The blocked statements' backends die first: a shutdown alone may end the lock's
                # holder before them, and a single statement granted the lock then commits (a true
                # 201, but not this phase's case, a connection lost mid-statement).
                await _fetch(
                    url,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'activity-service' AND wait_event_type = 'Lock'",
                )
                await asyncio.to_thread(stop_postgres, own_server)

            try:
                return await _post_concurrently(base_url, messages_one, kill_while_blocked)
            finally:
                blocker.terminate()

        messages_one = [f"locked {index}" for index in range(20)]
        responses = asyncio.run(phase_one())
        assert [response.status_code for response in responses] == [503] * 20
        tally(messages_one, responses)

        start_postgres(own_server)
        _wait_until_ready(http)

        # 2. Mid-window: the server goes down while requests wait for their batch to fill.
        async def kill_in_the_window() -> None:
            await asyncio.sleep(1)
            await asyncio.to_thread(stop_postgres, own_server)

        messages_two = [f"windowed {index}" for index in range(20)]
        responses = asyncio.run(_post_concurrently(base_url, messages_two, kill_in_the_window))
        tally(messages_two, responses)
        assert sum(response.status_code == 503 for response in responses) >= 10

        start_postgres(own_server)
        _wait_until_ready(http)
        assert http.post("/api/events/", json=valid_event(message="after")).status_code == 201

    stored = asyncio.run(_stored(url))
    assert {message: stored[message] for message in acknowledged} == acknowledged  # every 201 is there
    assert not set(refused) & set(stored)  # and these never reached a commit


def _wait_until_ready(http: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while http.get("/api/ready", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.1)
