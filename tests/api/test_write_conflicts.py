"""Writes under conflict, through both doors: shared idempotency keys never deadlock into a 500,
a deadlock that does happen is a retryable 503 / SERVICE_UNAVAILABLE, and a connection lost after
COMMIT still answers the committed write as a success."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from db.engine import Database
from tests.connection_kills import kill_before_release
from tests.support import valid_event

RECORD_EVENTS = "mutation($inputs: [RecordEventInput!]!) { recordEvents(inputs: $inputs) { id message } }"
ROUNDS = 10
KEYS_PER_BATCH = 6
DEADLOCK_KEYS = ["deadlock-a", "deadlock-b"]


def _rest_batch(keys: list[str]) -> list[dict[str, Any]]:
    # The event is derived from its key, so every request using a key asks for the same event.
    return [{**valid_event(message=key), "idempotency_key": key} for key in keys]


def _graphql_inputs(keys: list[str]) -> list[dict[str, Any]]:
    return [{**valid_event(message=key), "idempotencyKey": key} for key in keys]


async def _post_rest(client: httpx.AsyncClient, keys: list[str]) -> dict[str, str]:
    response = await client.post("/api/events/batch", json=_rest_batch(keys))
    assert response.status_code in (200, 201), response.text
    return {event["message"]: event["id"] for event in response.json()["events"]}


async def _post_graphql(client: httpx.AsyncClient, keys: list[str]) -> dict[str, str]:
    response = await client.post(
        "/graphql", json={"query": RECORD_EVENTS, "variables": {"inputs": _graphql_inputs(keys)}}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return {event["message"]: event["id"] for event in body["data"]["recordEvents"]}


async def _stored_messages(database_url: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        return [row["message"] for row in await connection.fetch("SELECT message FROM events ORDER BY 1")]
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "doors",
    [("rest", "rest"), ("graphql", "graphql"), ("rest", "graphql")],
    ids=["rest-rest", "graphql-graphql", "rest-graphql"],
)
async def test_concurrent_batches_reusing_keys_in_other_orders_all_succeed(
    client: httpx.AsyncClient, database_url: str, doors: tuple[str, str]
) -> None:
    post = {"rest": _post_rest, "graphql": _post_graphql}
    for round_number in range(ROUNDS):
        keys = [f"round-{round_number}-key-{index}" for index in range(KEYS_PER_BATCH)]
        # Four writers, two per door, each claiming the same keys in another order.
        orders = [keys, keys[::-1], keys[1::2] + keys[::2], keys[3:] + keys[:3]]
        answers = await asyncio.gather(
            *(post[doors[index % 2]](client, order) for index, order in enumerate(orders))
        )
        # Every writer got the same event for each key: one recorded it, the others replayed it.
        assert all(answer == answers[0] for answer in answers), answers
    assert len(await _stored_messages(database_url)) == ROUNDS * KEYS_PER_BATCH


# --- a real deadlock inside a request ---


@pytest.fixture
async def outsider(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection outside the service, holding locks the service's requests will want."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def _wait_for_a_service_claim_waiting_on_a_lock(outsider: asyncpg.Connection) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        # Inside a transaction, pg_stat_activity is read once and kept: drop that copy each time.
        await outsider.execute("SELECT pg_stat_clear_snapshot()")
        if await outsider.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'activity-service' "
            "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO idempotency_keys%'"
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the request never waited for the outsider's key")


async def _deadlocked(
    outsider: asyncpg.Connection, send: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """Send a request claiming DEADLOCK_KEYS into a real deadlock; return its answer.

    The outsider claims "deadlock-b" first; the request then claims "deadlock-a" (keys go in
    sorted order) and waits for "deadlock-b"; the outsider claims "deadlock-a" in turn. The request
    waits first, so its deadlock check (after deadlock_timeout) fires first and PostgreSQL rolls
    the request's transaction back. The outsider's claims are rolled back too: it only exists to
    deadlock the request.
    """
    claim = "INSERT INTO idempotency_keys (owner, key, request_hash) VALUES ('', $1, '\\x00'::bytea)"
    transaction = outsider.transaction()
    await transaction.start()
    try:
        # The outsider must not be the one whose check fires first (this needs a superuser, which
        # the embedded test server gives; elsewhere the request's earlier wait decides it alone).
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await outsider.execute("SET LOCAL deadlock_timeout = '60s'")
        await outsider.execute(claim, "deadlock-b")
        request = asyncio.create_task(send())
        await _wait_for_a_service_claim_waiting_on_a_lock(outsider)
        await outsider.execute(claim, "deadlock-a")  # returns once the request is rolled back
        return await request
    finally:
        await transaction.rollback()


async def test_a_deadlocked_rest_batch_is_a_retryable_503(
    client: httpx.AsyncClient, outsider: asyncpg.Connection, database_url: str
) -> None:
    response = await _deadlocked(
        outsider, lambda: client.post("/api/events/batch", json=_rest_batch(DEADLOCK_KEYS))
    )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json() == {"message": "The database is unavailable right now; retry shortly."}
    assert await _stored_messages(database_url) == []
    # And the retry the 503 asks for goes through.
    assert (await _post_rest(client, DEADLOCK_KEYS)).keys() == set(DEADLOCK_KEYS)


async def test_a_deadlocked_record_events_is_service_unavailable(
    client: httpx.AsyncClient, outsider: asyncpg.Connection, database_url: str
) -> None:
    variables = {"inputs": _graphql_inputs(DEADLOCK_KEYS)}
    response = await _deadlocked(
        outsider, lambda: client.post("/graphql", json={"query": RECORD_EVENTS, "variables": variables})
    )
    body = response.json()
    assert body["data"] is None, body
    assert [error["extensions"]["code"] for error in body["errors"]] == ["SERVICE_UNAVAILABLE"]
    assert await _stored_messages(database_url) == []
    assert (await _post_graphql(client, DEADLOCK_KEYS)).keys() == set(DEADLOCK_KEYS)


# --- the connection dies after COMMIT ---


async def test_a_batch_whose_connection_dies_after_commit_is_answered_201(
    client: httpx.AsyncClient, database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    killing = kill_before_release(database, database_url, monkeypatch)
    response = await client.post("/api/events/batch", json=[valid_event(message=m) for m in ("one", "two")])
    assert killing.kills >= 1
    assert response.status_code == 201, response.text
    assert [event["message"] for event in response.json()["events"]] == ["one", "two"]
    assert await _stored_messages(database_url) == ["one", "two"]


async def test_record_events_whose_connection_dies_after_commit_returns_the_events(
    client: httpx.AsyncClient, database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    killing = kill_before_release(database, database_url, monkeypatch)
    answer = await _post_graphql(client, ["one", "two"])
    assert killing.kills >= 1
    assert list(answer) == ["one", "two"]
    assert await _stored_messages(database_url) == ["one", "two"]


async def test_a_single_post_whose_connection_dies_after_commit_is_answered_201(
    client: httpx.AsyncClient, database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    killing = kill_before_release(database, database_url, monkeypatch)
    response = await client.post("/api/events/", json=valid_event(message="one"))
    assert killing.kills >= 1
    assert response.status_code == 201, response.text
    assert await _stored_messages(database_url) == ["one"]
