"""subscription eventRecorded: live events over websockets, from every worker process, filtered."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from graphql import ExecutionResult
from websockets.asyncio.client import ClientConnection, connect

from api.settings import Settings
from db.api_keys import KeyVerifier
from db.engine import Database
from db.group_commit import GroupCommitter
from db.live_feed.hub import EventHub
from db.repository import insert_event
from db.validation import parse_event_payload
from graphql_schema.context import Context
from graphql_schema.schema import schema
from tests.support import running_service, service_env, valid_event

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
TIMEOUT_S = 15.0

SUBSCRIPTION = """
subscription Live($filter: EventFilter) {
  eventRecorded(filter: $filter) { id component environment email message data createdAt }
}
"""
RECORD_EVENT = """
mutation Record($input: RecordEventInput!) { recordEvent(input: $input) { id } }
"""


class GraphQLSocket:
    """One websocket to /graphql speaking either protocol, carrying one subscription."""

    def __init__(self, websocket: ClientConnection, protocol: str) -> None:
        self.websocket = websocket
        self.protocol = protocol

    @classmethod
    @asynccontextmanager
    async def open(
        cls, base_url: str, protocol: str, payload: dict[str, Any] | None = None
    ) -> AsyncIterator["GraphQLSocket"]:
        url = base_url.replace("http://", "ws://", 1) + "/graphql"
        async with connect(url, subprotocols=[protocol]) as websocket:  # type: ignore[list-item]
            socket = cls(websocket, protocol)
            await socket._send({"type": "connection_init", "payload": payload or {}})
            assert (await socket._receive())["type"] == "connection_ack"
            yield socket

    async def subscribe(self, variables: dict[str, Any]) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self._send(
            {"id": "1", "type": kind, "payload": {"query": SUBSCRIPTION, "variables": variables}}
        )

    async def next_event(self) -> dict[str, Any]:
        """The next event delivered; fails on an error or the end of the stream."""
        message = await self._receive()
        assert message["type"] in ("next", "data"), message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]["eventRecorded"]

    async def events_through(self, last_id: str) -> list[dict[str, Any]]:
        """Events up to and including `last_id`, skipping the warm-up probes."""

        async def collect() -> list[dict[str, Any]]:
            events: list[dict[str, Any]] = []
            while not events or events[-1]["id"] != last_id:
                event = await self.next_event()
                if not event["message"].endswith(" probe"):
                    events.append(event)
            return events

        return await asyncio.wait_for(collect(), TIMEOUT_S)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.websocket.send(json.dumps(message))

    async def _receive(self) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.websocket.recv(), TIMEOUT_S))
            if message["type"] != "ka":  # graphql-ws keep-alives
                return message


async def record_through_rest(http: httpx.AsyncClient, base_url: str, event: dict[str, Any]) -> str:
    response = await http.post(f"{base_url}/api/events/", json=event)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def record_through_graphql(http: httpx.AsyncClient, base_url: str, event: dict[str, Any]) -> str:
    response = await http.post(
        f"{base_url}/graphql", json={"query": RECORD_EVENT, "variables": {"input": event}}
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["recordEvent"]["id"]


async def wait_until_subscribed(
    http: httpx.AsyncClient, base_url: str, sockets: list[GraphQLSocket], probe: dict[str, Any]
) -> None:
    """Record probes matching every socket until each has received one.

    The protocol does not acknowledge a subscription; once a probe arrives, every later commit
    will too. Probes still in flight arrive before the test's events (commit order) and are skipped.
    """
    waiting = list(sockets)
    for _ in range(40):
        await record_through_rest(http, base_url, probe)
        for socket in list(waiting):
            try:
                await asyncio.wait_for(socket.next_event(), 0.5)
            except TimeoutError:
                continue
            waiting.remove(socket)
        if not waiting:
            return
    raise AssertionError(f"{len(waiting)} subscription(s) never became live")


@pytest.fixture(scope="module")
def two_services(database_url: str) -> Iterator[tuple[str, str]]:
    """Two service processes on the test database: one with two uvicorn workers, one with one."""
    env = service_env(DATABASE_URL=database_url)
    with ExitStack() as stack:
        multi_worker, _ = stack.enter_context(running_service(env, "--workers", "2"))
        single_worker, _ = stack.enter_context(running_service(env))
        yield multi_worker, single_worker


@pytest.mark.slow
async def test_each_client_receives_exactly_its_events_in_order_from_both_doors_and_processes(
    two_services: tuple[str, str],
) -> None:
    service_a, service_b = two_services
    tag = uuid.uuid4().hex[:8]

    def event(environment: str, message: str, data: dict[str, Any]) -> dict[str, Any]:
        return valid_event(
            component=f"{tag}-checkout", environment=f"{tag}-{environment}", message=message, data=data
        )

    by_environment = {"filter": {"environment": f"{tag}-prod"}}
    by_message_and_data = {"filter": {"messageContains": f"{tag}-payment", "dataContains": {"tier": "gold"}}}
    # (door, service, event, expected by the first client, expected by the second)
    plan = [
        ("rest", service_a, event("prod", f"{tag}-login", {}), True, False),
        ("graphql", service_b, event("staging", f"{tag}-payment failed", {"tier": "gold"}), False, True),
        ("rest", service_b, event("prod", f"{tag}-PAYMENT ok", {"tier": "gold", "n": 3}), True, True),
        ("graphql", service_a, event("staging", f"{tag}-payment", {"tier": "silver"}), False, False),
        ("graphql", service_a, event("prod", "something", {"tier": "gold"}), True, False),
        ("rest", service_b, event("dev", f"{tag}-Payment again", {"tier": "gold"}), False, True),
        ("rest", service_a, event("prod", f"{tag}-payment last", {"tier": "gold"}), True, True),
    ]
    async with (
        GraphQLSocket.open(service_a, TRANSPORT_WS) as first,
        GraphQLSocket.open(service_b, TRANSPORT_WS) as second,
        httpx.AsyncClient(timeout=TIMEOUT_S) as http,
    ):
        await first.subscribe(by_environment)
        await second.subscribe(by_message_and_data)
        await wait_until_subscribed(
            http, service_b, [first, second], event("prod", f"{tag}-payment probe", {"tier": "gold"})
        )
        recorded: list[tuple[str, bool, bool]] = []
        for door, service, body, to_first, to_second in plan:
            record = record_through_rest if door == "rest" else record_through_graphql
            recorded.append((await record(http, service, body), to_first, to_second))
        last_id = recorded[-1][0]
        first_received = await first.events_through(last_id)
        second_received = await second.events_through(last_id)

    assert [e["id"] for e in first_received] == [event_id for event_id, to_first, _ in recorded if to_first]
    assert [e["id"] for e in second_received] == [
        event_id for event_id, _, to_second in recorded if to_second
    ]
    assert first_received[0]["message"] == f"{tag}-login"
    assert second_received[1]["data"] == {"tier": "gold", "n": 3}
    assert second_received[1]["createdAt"].endswith("+00:00")


@pytest.mark.slow
async def test_the_legacy_graphql_ws_protocol_receives_events_recorded_by_another_process(
    two_services: tuple[str, str],
) -> None:
    service_a, service_b = two_services
    component = f"legacy-{uuid.uuid4().hex[:8]}"
    async with (
        GraphQLSocket.open(service_b, LEGACY_WS) as socket,
        httpx.AsyncClient(timeout=TIMEOUT_S) as http,
    ):
        await socket.subscribe({"filter": {"componentIn": [component]}})
        await wait_until_subscribed(
            http, service_a, [socket], valid_event(component=component, message="a probe")
        )
        wanted = [
            await record_through_rest(http, service_a, valid_event(component=component, message="one")),
            await record_through_graphql(http, service_a, valid_event(component=component, message="two")),
        ]
        await record_through_rest(http, service_a, valid_event(component=f"{component}-other"))
        wanted.append(await record_through_rest(http, service_a, valid_event(component=component)))
        received = await socket.events_through(wanted[-1])

    assert [event["id"] for event in received] == wanted


# In-process: the resolver's error mapping, through the schema's own error masking.


@asynccontextmanager
async def subscription_on(
    hub: EventHub, database: Database, settings: Settings, variables: dict[str, Any]
) -> AsyncIterator[Any]:
    """Run eventRecorded on `hub`, with the context the websocket router would give it."""
    context = Context(
        database=database,
        settings=settings,
        key_verifier=KeyVerifier(database, cache_s=0),
        event_writer=GroupCommitter(database, max_rows=1, max_wait_s=0),  # subscriptions record nothing
        event_hub=hub,
    )
    results = await schema.subscribe(SUBSCRIPTION, variable_values=variables, context_value=context)
    assert not isinstance(results, ExecutionResult), results.errors
    try:
        yield results
    finally:
        await results.aclose()


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(int(TIMEOUT_S / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def record_directly(database: Database, **overrides: Any) -> None:
    async with database.transaction() as connection:
        await insert_event(connection, parse_event_payload(valid_event(**overrides)))


async def test_a_client_that_falls_behind_catches_up_from_the_table_and_misses_nothing(
    database: Database, settings: Settings
) -> None:
    component = f"slow-{uuid.uuid4().hex[:8]}"
    hub = EventHub(database, max_pending_events=2)
    await hub.start()
    try:
        async with subscription_on(hub, database, settings, {"filter": {"component": component}}) as results:
            first = asyncio.ensure_future(anext(results))  # subscribes, then waits for an event
            await eventually(lambda: hub.subscriber_count == 1)
            await record_directly(database, component=component, message="m0")
            delivered = [await asyncio.wait_for(first, TIMEOUT_S)]
            # The stream is not read now: m1 and m2 queue, m3 overflows the live queue.
            for message in ("m1", "m2", "m3", "m4"):
                await record_directly(database, component=component, message=message)
            await eventually(lambda: hub.subscriber_count == 0)
            # Read again: the rest comes from the table, then the stream is live once more.
            delivered += [await asyncio.wait_for(anext(results), TIMEOUT_S) for _ in range(4)]
            await record_directly(database, component=component, message="m5")
            delivered.append(await asyncio.wait_for(anext(results), TIMEOUT_S))
    finally:
        await hub.stop()

    assert all(not result.errors for result in delivered), [result.errors for result in delivered]
    messages = [result.data["eventRecorded"]["message"] for result in delivered]
    assert messages == ["m0", "m1", "m2", "m3", "m4", "m5"]


async def test_the_stream_ends_with_service_unavailable_when_the_feed_shuts_down(
    database: Database, settings: Settings
) -> None:
    hub = EventHub(database)
    await hub.start()
    async with subscription_on(hub, database, settings, {}) as results:
        waiting = asyncio.ensure_future(anext(results))
        await eventually(lambda: hub.subscriber_count == 1)
        await hub.stop()
        ended = await asyncio.wait_for(waiting, TIMEOUT_S)

    [error] = ended.errors
    assert error.extensions == {"code": "SERVICE_UNAVAILABLE"}
    assert "shutting down" in error.message


async def test_a_data_contains_that_is_not_an_object_is_refused_before_subscribing(
    database: Database, settings: Settings
) -> None:
    hub = EventHub(database)
    await hub.start()
    try:
        async with subscription_on(hub, database, settings, {"filter": {"dataContains": [1]}}) as results:
            refused = await asyncio.wait_for(anext(results), TIMEOUT_S)
        assert hub.subscriber_count == 0
    finally:
        await hub.stop()

    [error] = refused.errors
    assert error.extensions["code"] == "BAD_USER_INPUT"


async def test_a_cancelled_stream_leaves_the_hub(database: Database, settings: Settings) -> None:
    hub = EventHub(database)
    await hub.start()
    try:
        async with subscription_on(hub, database, settings, {}) as results:
            # What the websocket router does when the client sends `complete` or disconnects.
            waiting = asyncio.ensure_future(anext(results))
            await eventually(lambda: hub.subscriber_count == 1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await eventually(lambda: hub.subscriber_count == 0)
    finally:
        await hub.stop()
