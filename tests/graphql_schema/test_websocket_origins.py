"""Browser websockets to /graphql from another origin are allowed only for CORS_ALLOWED_ORIGINS."""

import json
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support import running_service, service_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cors_service(database_url: str) -> Iterator[str]:
    env = service_env(DATABASE_URL=database_url, CORS_ALLOWED_ORIGINS="https://app.example.com")
    with running_service(env) as (base_url, _process):
        yield base_url.replace("http://", "ws://", 1) + "/graphql"


async def test_a_listed_origin_may_open_a_subscription_socket(cors_service: str) -> None:
    async with connect(
        cors_service,
        subprotocols=["graphql-transport-ws"],
        origin="https://app.example.com",  # type: ignore[list-item,arg-type]
    ) as websocket:
        await websocket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await websocket.recv())["type"] == "connection_ack"


async def test_another_origin_is_refused(cors_service: str) -> None:
    with pytest.raises(InvalidStatus):
        async with connect(
            cors_service,
            subprotocols=["graphql-transport-ws"],
            origin="https://evil.example.com",  # type: ignore[list-item,arg-type]
        ):
            pass
