"""The /graphql endpoint and the checked-in SDL."""

import asyncio
import json

import httpx
import websockets
from websockets.typing import Subprotocol

from api.settings import Settings
from graphql_schema.export_schema import SDL_PATH, schema_sdl
from graphql_schema.router import graphql_router


def test_checked_in_sdl_matches_the_code() -> None:
    assert SDL_PATH.read_text(encoding="utf-8") == schema_sdl(), (
        "graphql_schema/schema.graphql is stale: run `python -m graphql_schema.export_schema`"
    )


async def test_get_serves_graphiql(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_post_serves_queries(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


def test_websocket_speaks_both_subscription_protocols() -> None:
    assert set(graphql_router(Settings(_env_file=None)).protocols) == {"graphql-transport-ws", "graphql-ws"}


async def test_websocket_handshake_works_with_both_protocols(live_server: str) -> None:
    # Only the handshake (it runs the context getter on a websocket); subscriptions are tested apart.
    url = live_server.replace("http://", "ws://") + "/graphql"
    for protocol in ("graphql-transport-ws", "graphql-ws"):
        async with websockets.connect(url, subprotocols=[Subprotocol(protocol)]) as socket:
            assert socket.subprotocol == protocol
            await socket.send(json.dumps({"type": "connection_init"}))
            reply = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
            assert reply["type"] == "connection_ack"
