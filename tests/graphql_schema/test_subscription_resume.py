"""`eventRecorded(after:)`: a client that resubscribes with its last cursor loses nothing.

Over real websockets against real service processes: the replay of what came after the cursor
joins the live feed with no gap and no duplicate, under a steady write load and across a restart
of the service; a live subscription rides out a restart of the database.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from db.embedded import EmbeddedPostgres
from tests.graphql_schema.test_subscription import TRANSPORT_WS
from tests.support import running_service, service_env, start_postgres, stop_postgres, valid_event

pytestmark = pytest.mark.slow

RESUME = """subscription($filter: EventFilter, $after: String) {
  eventRecorded(filter: $filter, after: $after) { id message cursor }
}"""
TIMEOUT_S = 30


@asynccontextmanager
async def resumed(base_url: str, component: str, after: str | None) -> AsyncIterator[ClientConnection]:
    """A graphql-transport-ws socket subscribed to `component`'s events after `after`."""
    url = base_url.replace("http://", "ws://", 1) + "/graphql"
    async with connect(url, subprotocols=[TRANSPORT_WS]) as websocket:  # type: ignore[list-item]
        await websocket.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await websocket.recv())["type"] == "connection_ack"
        variables = {"filter": {"component": component}, "after": after}
        await websocket.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": RESUME, "variables": variables}})
        )
        yield websocket


async def receive(websocket: ClientConnection, count: int) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        events = []
        while len(events) < count:
            message = json.loads(await websocket.recv())
            assert message["type"] == "next" and "errors" not in message["payload"], message
            events.append(message["payload"]["data"]["eventRecorded"])
        return events

    return await asyncio.wait_for(collect(), TIMEOUT_S)


async def post(http: httpx.AsyncClient, base_url: str, component: str, count: int = 1) -> list[str]:
    if count == 1:
        response = await http.post(f"{base_url}/api/events/", json=valid_event(component=component))
        assert response.status_code == 201, response.text
        return [response.json()["id"]]
    batch = [valid_event(component=component, message=f"b{index}") for index in range(count)]
    response = await http.post(f"{base_url}/api/events/batch", json=batch)
    assert response.status_code == 201, response.text
    return [event["id"] for event in response.json()["events"]]


async def ids_in_log_order(database_url: str, component: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT id::text AS id FROM events WHERE component = $1 ORDER BY created_at, id", component
        )
    finally:
        await connection.close()
    return [row["id"] for row in rows]


async def cursor_of(base_url: str, http: httpx.AsyncClient, event_id: str) -> str:
    body = (
        await http.post(f"{base_url}/graphql", json={"query": f'{{ event(id: "{event_id}") {{ cursor }} }}'})
    ).json()
    return body["data"]["event"]["cursor"]


async def test_the_switch_from_replay_to_live_under_steady_writes_has_no_gap_and_no_duplicate(
    live_server: str, database_url: str
) -> None:
    component = f"switch-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        history = await post(http, live_server, component, 1000) + await post(
            http, live_server, component, 200
        )
        after = await cursor_of(live_server, http, history[10])
        writing = True
        written: list[str] = []

        async def steady_writes() -> None:
            while writing:
                written.extend(await post(http, live_server, component, 1 + len(written) % 7))

        writer = asyncio.ensure_future(steady_writes())
        async with resumed(live_server, component, after) as websocket:
            # The replay (three pages of history) runs while events keep being recorded.
            first = await receive(websocket, len(history) - 11)
            await asyncio.sleep(1)
            writing = False
            await writer
            rest = await receive(websocket, len(written))
    received = [event["id"] for event in first + rest]
    assert received == (await ids_in_log_order(database_url, component))[11:]
    assert len(received) == len(set(received))


async def test_a_client_resuming_after_a_service_restart_gets_what_it_missed_then_live(
    database_url: str,
) -> None:
    component = f"restart-{uuid.uuid4().hex[:8]}"
    env = service_env(DATABASE_URL=database_url)
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        with running_service(env) as (first_service, _process):
            async with resumed(first_service, component, None) as websocket:
                await asyncio.sleep(0.5)  # subscribed (nothing acknowledges a subscription)
                before = await post(http, first_service, component, 3)
                seen = await receive(websocket, 3)
        assert [event["id"] for event in seen] == before
        # The service is gone; events keep arriving through another one (or a batch job).
        with running_service(env) as (second_service, _process):
            missed = await post(http, second_service, component, 4)
            async with resumed(second_service, component, seen[-1]["cursor"]) as websocket:
                replayed = await receive(websocket, 4)
                live = await post(http, second_service, component, 2)
                rest = await receive(websocket, 2)
    assert [event["id"] for event in replayed + rest] == missed + live


async def test_a_live_subscription_rides_out_a_database_restart_without_an_error(
    own_server: EmbeddedPostgres,
) -> None:
    """The feed's LISTEN connection dies with the database; the subscriber sees only latency."""
    component = f"dbrestart-{uuid.uuid4().hex[:8]}"
    env = service_env(DATABASE_URL=own_server.url, DB_CONNECT_TIMEOUT_S="2", DB_ACQUIRE_TIMEOUT_S="2")
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        with running_service(env) as (base_url, _process):
            async with resumed(base_url, component, None) as websocket:
                await asyncio.sleep(0.5)
                before = await post(http, base_url, component, 2)
                seen = await receive(websocket, 2)
                await asyncio.to_thread(stop_postgres, own_server)
                await asyncio.to_thread(start_postgres, own_server)
                after = await _post_when_back(http, base_url, component)
                seen += await receive(websocket, len(after))
    assert [event["id"] for event in seen] == before + after


async def _post_when_back(http: httpx.AsyncClient, base_url: str, component: str) -> list[str]:
    """Three events, posted one by one once the service answers 201 again."""
    posted: list[str] = []
    for _ in range(300):
        response = await http.post(f"{base_url}/api/events/", json=valid_event(component=component))
        if response.status_code == 201:
            posted.append(response.json()["id"])
            if len(posted) == 3:
                return posted
        else:
            await asyncio.sleep(0.1)
    raise AssertionError("the service did not recover")
