"""With AUTH_REQUIRED on, a subscription needs an events:read key in the connection_init payload."""

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from db.api_keys import create_api_key, revoke_api_key
from db.engine import Database
from tests.graphql_schema.test_subscription import TRANSPORT_WS, GraphQLSocket, wait_until_subscribed
from tests.support import running_service, service_env, valid_event

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def guarded_service(database_url: str) -> Iterator[str]:
    env = service_env(DATABASE_URL=database_url, AUTH_REQUIRED="true", API_KEY_CACHE_S="0")
    with running_service(env) as (base_url, _process):
        yield base_url


async def _key(database: Database, *scopes: str) -> str:
    async with database.transaction() as connection:
        _info, raw_key = await create_api_key(connection, "subscriber", list(scopes))
    return raw_key


async def _first_message(socket: GraphQLSocket) -> dict[str, object]:
    return json.loads(await asyncio.wait_for(socket.websocket.recv(), 15))


@pytest.mark.parametrize(("scopes", "code"), [((), "UNAUTHENTICATED"), (("events:write",), "FORBIDDEN")])
async def test_a_subscription_without_a_read_key_is_refused(
    guarded_service: str, database: Database, scopes: tuple[str, ...], code: str
) -> None:
    payload = {"Authorization": f"Bearer {await _key(database, *scopes)}"} if scopes else {}
    async with GraphQLSocket.open(guarded_service, TRANSPORT_WS, payload) as socket:
        await socket.subscribe({})
        message = await _first_message(socket)
    assert message["type"] == "error"
    assert message["payload"][0]["extensions"]["code"] == code  # type: ignore[index]


async def test_a_read_key_in_connection_init_receives_events(
    guarded_service: str, database: Database
) -> None:
    read_key = await _key(database, "events:read")
    write_headers = {"X-API-Key": await _key(database, "events:write")}
    async with (
        GraphQLSocket.open(guarded_service, TRANSPORT_WS, {"X-API-Key": read_key}) as socket,
        httpx.AsyncClient(timeout=15, headers=write_headers) as http,
    ):
        await socket.subscribe({"filter": {"component": "guarded"}})
        await wait_until_subscribed(
            http, guarded_service, [socket], valid_event(component="guarded", message="a probe")
        )
        response = await http.post(f"{guarded_service}/api/events/", json=valid_event(component="guarded"))
        assert response.status_code == 201
        received = await socket.events_through(response.json()["id"])
    assert [event["id"] for event in received] == [response.json()["id"]]


async def test_revoking_the_key_ends_its_live_feed_with_unauthenticated(
    guarded_service: str, database: Database
) -> None:
    async with database.transaction() as connection:
        info, read_key = await create_api_key(connection, "revoked subscriber", ["events:read"])
    write_headers = {"X-API-Key": await _key(database, "events:write")}
    async with (
        GraphQLSocket.open(guarded_service, TRANSPORT_WS, {"X-API-Key": read_key}) as socket,
        httpx.AsyncClient(timeout=15, headers=write_headers) as http,
    ):
        await socket.subscribe({"filter": {"component": "revoked"}})
        await wait_until_subscribed(
            http, guarded_service, [socket], valid_event(component="revoked", message="a probe")
        )
        async with database.transaction() as connection:
            assert await revoke_api_key(connection, info.id)
        # API_KEY_CACHE_S is 0 here: the feed re-checks its key every quarter second.
        while True:
            message = await _first_message(socket)
            if message["type"] == "next" and "errors" not in message["payload"]:  # type: ignore[operator]
                continue  # a probe still in flight
            break
        assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"  # type: ignore[index]
        assert (await _first_message(socket))["type"] == "complete"
        # Nothing recorded after the revocation reaches the socket.
        await http.post(f"{guarded_service}/api/events/", json=valid_event(component="revoked"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.websocket.recv(), 1)
