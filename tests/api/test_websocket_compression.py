"""WEBSOCKET_COMPRESSION: whether the served process accepts the permessage-deflate a client offers.

Against the real server (`activity-service serve`): the extension is negotiated in the handshake,
which only uvicorn sees. A subscription works either way.
"""

import asyncio

import orjson
import pytest
import websockets

from tests.support import running_service, service_env

SUBSCRIBE = {
    "id": "1",
    "type": "subscribe",
    "payload": {"query": "subscription { eventRecorded { id } }"},
}


async def _handshake(base_url: str) -> str | None:
    """The extensions the server accepted for a client that offers permessage-deflate (as
    browsers and the `websockets` client do), after a subscription has started on it."""
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(orjson.dumps({"type": "connection_init"}).decode())
        assert orjson.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "connection_ack"
        await socket.send(orjson.dumps(SUBSCRIBE).decode())
        return socket.response.headers.get("Sec-WebSocket-Extensions")  # type: ignore[union-attr]


@pytest.mark.slow  # three service processes
@pytest.mark.parametrize(("setting", "accepted"), [("true", True), ("false", False), (None, False)])
def test_the_offered_compression_is_accepted_only_when_enabled(
    database_url: str, setting: str | None, accepted: bool
) -> None:
    """Off unless enabled (None: the setting not given at all)."""
    env = service_env(DATABASE_URL=database_url)
    env.pop("WEBSOCKET_COMPRESSION", None)
    if setting is not None:
        env["WEBSOCKET_COMPRESSION"] = setting
    with running_service(env) as (base_url, _process):
        extensions = asyncio.run(_handshake(base_url))
    assert (extensions is not None and "permessage-deflate" in extensions) is accepted, extensions
