"""The request-header limit: a head over MAX_REQUEST_HEADER_BYTES is a 431 with a JSON message,
in-process and through a real uvicorn (whose httptools parser lets any size through)."""

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.middleware import HeaderSizeLimitMiddleware
from api.settings import Settings

LIMIT = Settings.model_fields["max_request_header_bytes"].default
TOO_LARGE = {"message": f"The request headers are larger than the limit of {LIMIT} bytes."}


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 431, response.text[:200]
    assert response.headers["content-type"] == "application/json"
    assert response.json() == TOO_LARGE


async def test_a_header_over_the_limit_is_a_431_json_message(client: httpx.AsyncClient) -> None:
    _assert_refused(await client.get("/api/health", headers={"X-Padding": "x" * LIMIT}))


async def test_many_small_headers_over_the_limit_together_are_a_431(client: httpx.AsyncClient) -> None:
    headers = [(f"x-padding-{index}", "x" * 1000) for index in range(LIMIT // 1000 + 1)]
    _assert_refused(await client.get("/api/health", headers=headers))


async def test_a_long_query_string_is_not_counted_as_headers(client: httpx.AsyncClient) -> None:
    # Filter values are bounded by the event limits (a whole message may be searched for).
    response = await client.get("/api/events/", params={"message": "x" * LIMIT})
    assert response.status_code == 200, response.text


async def test_a_write_over_the_limit_is_refused_before_anything_is_recorded(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/events/", json={}, headers={"X-Padding": "x" * LIMIT})
    _assert_refused(response)
    assert (await client.get("/api/events/")).json() == {"events": []}


async def test_headers_a_little_under_the_limit_are_served(client: httpx.AsyncClient) -> None:
    # httpx adds its own few headers (host, accept, user-agent, ...): leave them room.
    response = await client.get("/api/health", headers={"X-Padding": "x" * (LIMIT - 1024)})
    assert response.status_code == 200


async def test_a_huge_header_through_uvicorn_is_a_431(live_server: str) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        _assert_refused(await http.get("/api/health", headers={"X-Padding": "x" * (8 * 1024 * 1024)}))
        # The service is none the worse for it.
        assert (await http.get("/api/health")).status_code == 200


async def test_a_websocket_handshake_over_the_limit_is_refused_with_431(live_server: str) -> None:
    # Each line under the websockets library's own 8 KiB line limit; together over ours.
    headers = [(f"X-Padding-{index}", "x" * 4000) for index in range(LIMIT // 4000 + 1)]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            live_server.replace("http://", "ws://") + "/graphql",
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            additional_headers=headers,
        ):
            pass
    assert refused.value.response.status_code == 431


async def test_a_websocket_handshake_is_closed_unaccepted_where_no_http_answer_can_be_sent() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app must not see the handshake")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    scope = {"type": "websocket", "path": "/graphql", "headers": [(b"x-padding", b"x" * LIMIT)]}
    await HeaderSizeLimitMiddleware(app, max_bytes=LIMIT)(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_every_documented_operation_lists_the_431(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    operations = [op for path in document["paths"].values() for op in path.values() if "responses" in op]
    assert operations
    assert all("431" in operation["responses"] for operation in operations)
