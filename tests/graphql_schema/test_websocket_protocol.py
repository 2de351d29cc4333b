"""Both websocket protocols, to the letter, over a real uvicorn: every mistake answered, none logged.

graphql-transport-ws follows graphql-ws's PROTOCOL.md (close codes 4400, 4401, 4408, 4409, 4429,
`error` for a refused operation); the legacy graphql-ws protocol serves queries and mutations too and
answers mistakes with its `error` / `connection_error` messages. Connection caps close with 1013.
"""

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import api.app
from api.settings import Settings
from graphql_schema import policy
from graphql_schema.router import graphql_router
from graphql_schema.websockets.connections import KEY_FULL_REASON, PROCESS_FULL_REASON
from tests.graphql_schema.test_subscription import LEGACY_WS, TRANSPORT_WS, GraphQLSocket
from tests.support import app_sharing_services, free_port, running_service, service_env, valid_event

TIMEOUT_S = 15.0
# How long a socket must stay silent for "no answer" to count as an answer.
QUIET_S = 0.3
RECORD_EVENT = "mutation Record($input: RecordEventInput!) { recordEvent(input: $input) { id message } }"
COSTLY = "{ events(first: 500) { nodes { actor { events(first: 500) { id message } } } } }"
INIT = {"type": "connection_init", "payload": {}}


def socket_url(base_url: str, query: str = "") -> str:
    return base_url.replace("http://", "ws://", 1) + "/graphql" + query


@asynccontextmanager
async def raw_socket(base_url: str, protocol: str, query: str = "") -> AsyncIterator[GraphQLSocket]:
    """A socket that has sent nothing yet (GraphQLSocket.open also initialises the connection)."""
    async with connect(socket_url(base_url, query), subprotocols=[protocol]) as websocket:  # type: ignore[list-item]
        yield GraphQLSocket(websocket, protocol)


async def send(socket: GraphQLSocket, *frames: object) -> None:
    """Send each frame: a dict as JSON, a str or bytes as it is."""
    for frame in frames:
        await socket.websocket.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))


async def closed_with(websocket: ClientConnection) -> tuple[int, str, list[Any]]:
    """The server's close code and reason, and the messages it sent before closing."""
    before: list[Any] = []
    try:
        while True:
            before.append(json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_S)))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code, closed.rcvd.reason, before


async def silent(socket: GraphQLSocket) -> bool:
    """Whether the server sends nothing for a while (an ignored message)."""
    try:
        message = await asyncio.wait_for(socket.websocket.recv(), QUIET_S)
    except TimeoutError:
        return True
    raise AssertionError(f"expected silence, got {message!r}")


def subscribe(operation_id: str, payload: object, protocol: str = TRANSPORT_WS) -> dict[str, Any]:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    return {"id": operation_id, "type": kind, "payload": payload}


def server_log(process: subprocess.Popen[bytes]) -> str:
    """All the service has printed so far (running_service sends it to an unnamed temporary file)."""
    return Path(f"/proc/{process.pid}/fd/1").read_text(errors="replace")


@pytest.fixture(scope="module")
def logged_service(database_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A service whose output the tests read."""
    with running_service(service_env(DATABASE_URL=database_url)) as running:
        yield running


def assert_no_traceback(process: subprocess.Popen[bytes]) -> None:
    output = server_log(process)
    assert "Traceback" not in output, output[-4000:]
    assert "Exception in ASGI application" not in output, output[-4000:]


# graphql-transport-ws: the connection


@pytest.mark.parametrize("init", [{"type": "connection_init", "payload": None}, {"type": "connection_init"}])
async def test_connection_init_with_a_null_or_absent_payload_is_acknowledged(
    live_server: str, init: dict[str, Any]
) -> None:
    async with raw_socket(live_server, TRANSPORT_WS) as socket:
        await send(socket, init)
        assert await socket._receive() == {"type": "connection_ack"}


async def test_a_second_connection_init_closes_4429(live_server: str) -> None:
    async with GraphQLSocket.open(live_server, TRANSPORT_WS) as socket:
        await send(socket, INIT)
        code, reason, before = await closed_with(socket.websocket)
    assert (code, reason, before) == (4429, "Too many initialisation requests", [])


async def test_subscribe_before_the_acknowledgement_closes_4401(live_server: str) -> None:
    async with raw_socket(live_server, TRANSPORT_WS) as socket:
        await send(socket, subscribe("1", {"query": "{ __typename }"}))
        code, reason, _ = await closed_with(socket.websocket)
    assert (code, reason) == (4401, "Unauthorized")


async def test_an_id_still_in_use_closes_4409(live_server: str) -> None:
    live = {"query": "subscription { eventRecorded { id } }"}
    async with GraphQLSocket.open(live_server, TRANSPORT_WS) as socket:
        await send(socket, subscribe("twice", live), subscribe("twice", {"query": "{ __typename }"}))
        code, reason, before = await closed_with(socket.websocket)
    assert (code, reason, before) == (4409, "Subscriber for twice already exists", [])


async def test_a_completed_id_may_be_used_again(live_server: str) -> None:
    async with GraphQLSocket.open(live_server, TRANSPORT_WS) as socket:
        for _ in range(2):
            await send(socket, subscribe("again", {"query": "{ __typename }"}))
            assert (await socket._receive())["type"] == "next"
            assert await socket._receive() == {"id": "again", "type": "complete"}


async def test_ping_is_answered_with_pong_before_and_after_init_and_pong_is_ignored(live_server: str) -> None:
    async with raw_socket(live_server, TRANSPORT_WS) as socket:
        await send(socket, {"type": "ping"})
        assert await socket._receive() == {"type": "pong"}
        await send(socket, INIT, {"type": "ping", "payload": {"sent": 1}})
        assert await socket._receive() == {"type": "connection_ack"}
        assert await socket._receive() == {"type": "pong", "payload": {"sent": 1}}
        await send(socket, {"type": "pong"}, {"type": "complete", "id": "unknown"})
        assert await silent(socket)


async def test_a_long_close_reason_is_cut_to_fit_a_close_frame(live_server: str) -> None:
    long_id = "x" * 500
    live = {"query": "subscription { eventRecorded { id } }"}
    async with GraphQLSocket.open(live_server, TRANSPORT_WS) as socket:
        await send(socket, subscribe(long_id, live), subscribe(long_id, live))
        code, reason, _ = await closed_with(socket.websocket)
    assert code == 4409
    assert reason.startswith("Subscriber for xxx") and len(reason.encode()) <= 123


# graphql-transport-ws: operations


async def test_a_query_and_a_mutation_get_next_then_complete(live_server: str) -> None:
    event = valid_event(component=f"ws-{uuid.uuid4().hex[:8]}")
    async with GraphQLSocket.open(live_server, TRANSPORT_WS) as socket:
        await send(socket, subscribe("m", {"query": RECORD_EVENT, "variables": {"input": event}}))
        recorded = await socket._receive()
        assert await socket._receive() == {"id": "m", "type": "complete"}
        query = "query One($id: ID!) { event(id: $id) { id component } }"
        event_id = recorded["payload"]["data"]["recordEvent"]["id"]
        await send(socket, subscribe("q", {"query": query, "variables": {"id": event_id}}))
        found = await socket._receive()
        assert await socket._receive() == {"id": "q", "type": "complete"}
    assert recorded["type"] == "next" and "errors" not in recorded["payload"]
    assert found == {
        "id": "q",
        "type": "next",
        "payload": {"data": {"event": {"id": event_id, "component": event["component"]}}},
    }


async def test_operation_name_picks_one_of_several_operations(live_server: str) -> None:
    document = "query A { __typename } query B { alias: __typename }"
    async with GraphQLSocket.open(live_server, TRANSPORT_WS) as socket:
        await send(socket, subscribe("1", {"query": document, "operationName": "B"}))
        assert (await socket._receive())["payload"] == {"data": {"alias": "Query"}}


# The same refusals over both protocols: (query, variables, operationName, code).
REFUSALS = {
    "syntax error": ("{ events(", None, None, "GRAPHQL_PARSE_FAILED"),
    "empty document": ("", None, None, "GRAPHQL_PARSE_FAILED"),
    "over the token limit": ("{ " + "__typename " * 1200 + "}", None, None, "GRAPHQL_PARSE_FAILED"),
    "unknown field": ("{ nope }", None, None, "GRAPHQL_VALIDATION_FAILED"),
    "undefined fragment": ("{ ...Missing }", None, None, "GRAPHQL_VALIDATION_FAILED"),
    "too deep": (
        "{ events { nodes { actor { events { actor { events { actor { events { actor { events "
        "{ actor { events { id } } } } } } } } } } } } }",
        None,
        None,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "unknown operationName": ("query A { __typename }", None, "B", "OPERATION_RESOLUTION_FAILURE"),
    "several operations, no name": (
        "query A { __typename } query B { __typename }",
        None,
        None,
        "OPERATION_RESOLUTION_FAILURE",
    ),
    "variable of the wrong type": (
        "query Q($first: Int!) { events(first: $first) { nodes { id } } }",
        {"first": "many"},
        None,
        "BAD_USER_INPUT",
    ),
    "variable missing": (
        "query Q($first: Int!) { events(first: $first) { nodes { id } } }",
        {},
        None,
        "BAD_USER_INPUT",
    ),
    "too costly": (COSTLY, None, None, "QUERY_TOO_COMPLEX"),
    "too costly per event": (
        "subscription { eventRecorded { actor { events(first: 500) { message } } } }",
        None,
        None,
        "QUERY_TOO_COMPLEX",
    ),
}


def refusal_payload(name: str) -> dict[str, Any]:
    query, variables, operation_name, _code = REFUSALS[name]
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    if operation_name is not None:
        payload["operationName"] = operation_name
    return payload


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFUSALS))
async def test_a_refused_operation_gets_one_error_message_and_the_connection_lives_on(
    logged_service: tuple[str, subprocess.Popen[bytes]], name: str
) -> None:
    base_url, process = logged_service
    async with GraphQLSocket.open(base_url, TRANSPORT_WS) as socket:
        await send(socket, subscribe("1", refusal_payload(name)))
        refused = await socket._receive()
        # No `complete` after an `error`: the next message is the answer to this ping.
        await send(socket, {"type": "ping"})
        assert await socket._receive() == {"type": "pong"}
    assert refused["type"] == "error" and refused["id"] == "1", refused
    assert refused["payload"], refused
    assert {error["extensions"]["code"] for error in refused["payload"]} == {REFUSALS[name][3]}, refused
    assert "data" not in refused["payload"][0]
    assert_no_traceback(process)


# Messages that are not as PROTOCOL.md specifies them: each closes the socket 4400.
TRANSPORT_WS_VIOLATIONS: dict[str, object] = {
    "not JSON": "not json",
    "JSON nested 100,000 deep": "[" * 100_000,
    "a number of 5,000 digits": "1" * 5_000,
    "a JSON array": "[1, 2]",
    "a JSON string": '"subscribe"',
    "no type": {"id": "1", "payload": {"query": "{ __typename }"}},
    "a type that is a number": {"type": 5},
    "an unknown type": {"type": "start", "id": "1", "payload": {"query": "{ __typename }"}},
    "the server's next": {"type": "next", "id": "1", "payload": {}},
    "the server's error": {"type": "error", "id": "1", "payload": []},
    "the server's connection_ack": {"type": "connection_ack"},
    "a ping payload that is a string": {"type": "ping", "payload": "hello"},
    "a pong payload that is a list": {"type": "pong", "payload": [1]},
    "subscribe without id": {"type": "subscribe", "payload": {"query": "{ __typename }"}},
    "subscribe with an empty id": subscribe("", {"query": "{ __typename }"}),
    "subscribe with a numeric id": subscribe(1, {"query": "{ __typename }"}),  # type: ignore[arg-type]
    "subscribe without payload": {"type": "subscribe", "id": "1"},
    "subscribe with a null payload": subscribe("1", None),
    "subscribe with a list payload": subscribe("1", [{"query": "{ __typename }"}]),
    "subscribe with a string payload": subscribe("1", "{ __typename }"),
    "no query": subscribe("1", {"variables": {}}),
    "a query that is a number": subscribe("1", {"query": 5}),
    "a query that is null": subscribe("1", {"query": None}),
    "a query that is a list": subscribe("1", {"query": ["{ __typename }"]}),
    "variables that are a list": subscribe("1", {"query": "{ __typename }", "variables": [1]}),
    "variables that are a string": subscribe("1", {"query": "{ __typename }", "variables": "{}"}),
    "an operationName that is a number": subscribe("1", {"query": "{ __typename }", "operationName": 5}),
    "an operationName that is an object": subscribe("1", {"query": "{ __typename }", "operationName": {}}),
    "extensions that are a list": subscribe("1", {"query": "{ __typename }", "extensions": []}),
    # A query may be left out only when extensions.persistedQuery names the document.
    "no query and a null persisted query": subscribe("1", {"extensions": {"persistedQuery": None}}),
    "complete without id": {"type": "complete"},
    "complete with a numeric id": {"type": "complete", "id": 7},
    "a binary frame": b"\x00\x01",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRANSPORT_WS_VIOLATIONS))
async def test_a_message_not_as_the_protocol_specifies_closes_4400_with_a_reason(
    logged_service: tuple[str, subprocess.Popen[bytes]], name: str
) -> None:
    base_url, process = logged_service
    async with GraphQLSocket.open(base_url, TRANSPORT_WS) as socket:
        await send(socket, TRANSPORT_WS_VIOLATIONS[name])
        code, reason, before = await closed_with(socket.websocket)
    assert (code, before) == (4400, [])
    assert reason
    assert_no_traceback(process)


@pytest.mark.slow
@pytest.mark.parametrize("payload", ["token", [1], 5, True])
async def test_a_connection_init_payload_that_is_not_an_object_closes_4400(
    logged_service: tuple[str, subprocess.Popen[bytes]], payload: object
) -> None:
    base_url, process = logged_service
    async with raw_socket(base_url, TRANSPORT_WS) as socket:
        await send(socket, {"type": "connection_init", "payload": payload})
        code, reason, before = await closed_with(socket.websocket)
    assert (code, before) == (4400, [])
    assert "payload" in reason
    assert_no_traceback(process)


# Client mistakes found while running: an answer with a client code, as over HTTP.
EXECUTION_MISTAKES = {
    # Valid timestamps whose UTC instant falls in year 0 or 10000.
    "from before year 1 in UTC": '{ events(filter: {from: "0001-01-01T00:00:00+01:00"}) { nodes { id } } }',
    "to after year 9999 in UTC": '{ events(filter: {to: "9999-12-31T23:59:59-01:00"}) { nodes { id } } }',
    "a cursor that is not one": '{ events(after: "not-a-cursor") { nodes { id } } }',
    "an invalid event": (
        'mutation { recordEvent(input: {component: "", environment: "p", email: "nobody", '
        'message: "m", data: {}}) { id } }'
    ),
    "a data filter that is not an object": "subscription { eventRecorded(filter: {dataContains: 1}) { id } }",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXECUTION_MISTAKES))
@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_mistake_found_while_running_is_a_client_error_and_is_not_logged(
    logged_service: tuple[str, subprocess.Popen[bytes]], protocol: str, name: str
) -> None:
    base_url, process = logged_service
    async with GraphQLSocket.open(base_url, protocol) as socket:
        await send(socket, subscribe("1", {"query": EXECUTION_MISTAKES[name]}, protocol))
        answer = await socket._receive()
        ending = await socket._receive()
    errors = answer["payload"]["errors"] if answer["type"] in ("next", "data") else answer["payload"]
    codes = {error["extensions"]["code"] for error in (errors if isinstance(errors, list) else [errors])}
    assert codes == {"BAD_USER_INPUT"}, answer
    assert ending["type"] == "complete" or answer["type"] == "error", ending
    assert_no_traceback(process)


# The legacy graphql-ws protocol


async def test_legacy_protocol_serves_queries_and_mutations_with_data_then_complete(live_server: str) -> None:
    event = valid_event(component=f"legacy-{uuid.uuid4().hex[:8]}")
    async with GraphQLSocket.open(live_server, LEGACY_WS) as socket:
        await send(socket, subscribe("m", {"query": RECORD_EVENT, "variables": {"input": event}}, LEGACY_WS))
        recorded = await socket._receive()
        assert await socket._receive() == {"type": "complete", "id": "m"}
        await send(socket, subscribe("q", {"query": "{ __schema { queryType { name } } }"}, LEGACY_WS))
        introspected = await socket._receive()
        assert await socket._receive() == {"type": "complete", "id": "q"}
    assert recorded["type"] == "data" and recorded["id"] == "m"
    assert recorded["payload"]["data"]["recordEvent"]["message"] == event["message"]
    assert introspected == {
        "type": "data",
        "id": "q",
        "payload": {"data": {"__schema": {"queryType": {"name": "Query"}}}},
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFUSALS))
async def test_legacy_protocol_answers_a_refused_operation_with_an_error_message(
    logged_service: tuple[str, subprocess.Popen[bytes]], name: str
) -> None:
    base_url, process = logged_service
    async with GraphQLSocket.open(base_url, LEGACY_WS) as socket:
        await send(socket, subscribe("1", refusal_payload(name), LEGACY_WS))
        refused = await socket._receive()
        # The connection still serves.
        await send(socket, subscribe("2", {"query": "{ __typename }"}, LEGACY_WS))
        assert (await socket._receive())["payload"] == {"data": {"__typename": "Query"}}
    assert refused["type"] == "error" and refused["id"] == "1", refused
    assert refused["payload"]["extensions"]["code"] == REFUSALS[name][3], refused
    assert_no_traceback(process)


# (frames after connection_init, the message type answered, its code, whether it carries the id)
LEGACY_MISTAKES: dict[str, tuple[object, str, str, bool]] = {
    "not JSON": ("not json", "connection_error", "BAD_REQUEST", False),
    "JSON nested 100,000 deep": ("[" * 100_000, "connection_error", "BAD_REQUEST", False),
    "a JSON array": ("[1]", "connection_error", "BAD_REQUEST", False),
    "no type": ({"id": "1"}, "connection_error", "BAD_REQUEST", False),
    "an unknown type with an id": ({"type": "subscribe", "id": "1"}, "error", "BAD_REQUEST", True),
    "an unknown type without id": ({"type": "ka"}, "error", "BAD_REQUEST", False),
    "start without id": (
        {"type": "start", "payload": {"query": "{ __typename }"}},
        "connection_error",
        "BAD_REQUEST",
        False,
    ),
    "start with an empty id": (
        subscribe("", {"query": "{ __typename }"}, LEGACY_WS),
        "connection_error",
        "BAD_REQUEST",
        False,
    ),
    "stop without id": ({"type": "stop"}, "connection_error", "BAD_REQUEST", False),
    "start without payload": ({"type": "start", "id": "1"}, "error", "BAD_REQUEST", True),
    "a payload that is a list": (subscribe("1", [], LEGACY_WS), "error", "BAD_REQUEST", True),
    "a query that is a number": (subscribe("1", {"query": 5}, LEGACY_WS), "error", "BAD_REQUEST", True),
    "no query": (subscribe("1", {"variables": {}}, LEGACY_WS), "error", "BAD_REQUEST", True),
    "variables that are a list": (
        subscribe("1", {"query": "{ __typename }", "variables": []}, LEGACY_WS),
        "error",
        "BAD_REQUEST",
        True,
    ),
    "an operationName that is a number": (
        subscribe("1", {"query": "{ __typename }", "operationName": 1}, LEGACY_WS),
        "error",
        "BAD_REQUEST",
        True,
    ),
    "extensions that are a string": (
        subscribe("1", {"query": "{ __typename }", "extensions": "x"}, LEGACY_WS),
        "error",
        "BAD_REQUEST",
        True,
    ),
    "a persisted query hash alone": (
        subscribe(
            "1", {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab" * 32}}}, LEGACY_WS
        ),
        "error",
        "PERSISTED_QUERY_NOT_FOUND",
        True,
    ),
    "a second connection_init": (INIT, "connection_error", "BAD_REQUEST", False),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LEGACY_MISTAKES))
async def test_legacy_protocol_answers_a_client_mistake_with_its_error_messages(
    logged_service: tuple[str, subprocess.Popen[bytes]], name: str
) -> None:
    base_url, process = logged_service
    frame, kind, code, with_id = LEGACY_MISTAKES[name]
    async with GraphQLSocket.open(base_url, LEGACY_WS) as socket:
        await send(socket, frame)
        answer = await socket._receive()
        await send(socket, subscribe("after", {"query": "{ __typename }"}, LEGACY_WS))
        assert (await socket._receive())["payload"] == {"data": {"__typename": "Query"}}
    assert answer["type"] == kind, answer
    assert answer["payload"]["extensions"]["code"] == code, answer
    assert answer["payload"]["message"]
    assert ("id" in answer) is with_id, answer
    assert_no_traceback(process)


@pytest.mark.slow
async def test_legacy_protocol_closes_on_a_start_before_connection_init_and_on_binary_frames(
    logged_service: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base_url, process = logged_service
    async with raw_socket(base_url, LEGACY_WS) as socket:
        await send(socket, subscribe("1", {"query": "{ __typename }"}, LEGACY_WS))
        assert (await closed_with(socket.websocket))[:2] == (4401, "Unauthorized")
    async with GraphQLSocket.open(base_url, LEGACY_WS) as socket:
        await send(socket, b"\x00")
        assert (await closed_with(socket.websocket))[0] == 1002
    async with raw_socket(base_url, LEGACY_WS) as socket:
        await send(socket, {"type": "connection_init", "payload": "token"})
        code, _reason, before = await closed_with(socket.websocket)
    assert code == 1000
    assert [message["type"] for message in before] == ["connection_error"]
    assert before[0]["payload"]["extensions"]["code"] == "BAD_REQUEST"
    assert_no_traceback(process)


async def test_legacy_protocol_stop_ends_a_subscription_with_complete(live_server: str) -> None:
    async with GraphQLSocket.open(live_server, LEGACY_WS) as socket:
        await send(socket, subscribe("live", {"query": "subscription { eventRecorded { id } }"}, LEGACY_WS))
        await send(socket, {"type": "stop", "id": "live"}, {"type": "stop", "id": "unknown"})
        assert await socket._receive() == {"type": "complete", "id": "live"}
        assert await silent(socket)


# Logs


@pytest.mark.slow
async def test_the_websocket_handshake_is_logged_without_its_query_string(
    logged_service: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base_url, process = logged_service
    secret = f"secret-{uuid.uuid4().hex}"
    for protocol in (TRANSPORT_WS, LEGACY_WS):
        async with raw_socket(base_url, protocol, f"?token={secret}") as socket:
            await send(socket, INIT)
            assert (await socket._receive())["type"] == "connection_ack"
    await asyncio.sleep(0.2)  # the log line is written by the server process
    output = server_log(process)
    assert '"WebSocket /graphql" [accepted]' in output, output[-2000:]
    assert secret not in output
    assert "?token=" not in output


# In-process: what needs a server built for the test (a failing component, a short init wait)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """uvicorn serving `app` (lifespan off: it shares the session app's services) on this loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, lifespan="off", log_config=None))
    running = asyncio.create_task(server.serve())
    while not server.started:
        if running.done():
            running.result()  # startup failed: raise why
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await running


async def test_no_connection_init_within_the_wait_closes_4408(
    app: FastAPI, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def impatient_router(settings: Settings) -> Any:
        router = graphql_router(settings)
        router.connection_init_wait_timeout = timedelta(milliseconds=200)
        return router

    monkeypatch.setattr(api.app, "graphql_router", impatient_router)
    async with (
        serving(app_sharing_services(app, settings)) as base_url,
        raw_socket(base_url, TRANSPORT_WS) as socket,
    ):
        code, reason, before = await closed_with(socket.websocket)
    assert (code, reason, before) == (4408, "Connection initialisation timeout", [])


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_an_unexpected_failure_ends_only_its_operation_with_internal_server_error_logged_once(
    app: FastAPI,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
) -> None:
    def broken_cost(*_args: object) -> int:
        raise RuntimeError("a defect with a secret detail")

    async with (
        serving(app_sharing_services(app, settings)) as base_url,
        GraphQLSocket.open(base_url, protocol) as socket,
    ):
        with monkeypatch.context() as patch:
            patch.setattr(policy, "check_cost", broken_cost)
            await send(socket, subscribe("broken", {"query": "{ __typename }"}, protocol))
            failed = await socket._receive()
        await send(socket, subscribe("fine", {"query": "{ __typename }"}, protocol))
        served = await socket._receive()

    errors = failed["payload"] if protocol == TRANSPORT_WS else [failed["payload"]]
    assert failed["type"] == "error" and failed["id"] == "broken"
    assert errors == [{"message": "Internal server error.", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]
    assert served["id"] == "fine" and served["payload"] == {"data": {"__typename": "Query"}}
    logged = [
        record for record in caplog.records if record.exc_info and "secret detail" in str(record.exc_info[1])
    ]
    assert len(logged) == 1


# Connection caps


CAP_TOTAL = 6
CAP_PER_KEY = 2


@pytest.fixture(scope="module")
def capped_service(database_url: str) -> Iterator[str]:
    env = service_env(
        DATABASE_URL=database_url,
        AUTH_REQUIRED="true",
        API_KEY_CACHE_S="0",
        GRAPHQL_MAX_WEBSOCKETS=str(CAP_TOTAL),
        GRAPHQL_MAX_WEBSOCKETS_PER_KEY=str(CAP_PER_KEY),
    )
    with running_service(env) as (base_url, _process):
        yield base_url


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


async def open_acknowledged(base_url: str, key: str | None = None) -> ClientConnection:
    """A connection acknowledged with `key`; raises Refused with the close code otherwise.

    A connection refused only because the process was full is retried for a while: sockets the
    previous test closed may not have been counted out yet.
    """
    payload = {"X-API-Key": key} if key else {}
    for _ in range(50):
        websocket = await connect(socket_url(base_url), subprotocols=[TRANSPORT_WS])  # type: ignore[list-item]
        await websocket.send(json.dumps({"type": "connection_init", "payload": payload}))
        try:
            assert json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_S))["type"] == "connection_ack"
            return websocket
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            refused = Refused(closed.rcvd.code, closed.rcvd.reason)
        if refused.reason != PROCESS_FULL_REASON:
            raise refused
        await asyncio.sleep(0.05)
    raise refused


@pytest.mark.slow
async def test_beyond_the_per_key_cap_a_connection_is_closed_1013_after_connection_init(
    capped_service: str, keys: dict[str, str]
) -> None:
    held = [await open_acknowledged(capped_service, keys["read"]) for _ in range(CAP_PER_KEY)]
    try:
        with pytest.raises(Refused) as refused:
            await open_acknowledged(capped_service, keys["read"])
        assert (refused.value.code, refused.value.reason) == (1013, KEY_FULL_REASON)
        # Another key, and a connection without any, are not counted against that key.
        held.append(await open_acknowledged(capped_service, keys["write"]))
        held.append(await open_acknowledged(capped_service))
        # A closed connection gives its key's place back.
        await held.pop(0).close()
        for _ in range(50):
            try:
                held.append(await open_acknowledged(capped_service, keys["read"]))
                break
            except Refused:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the key's place was never given back")
    finally:
        for websocket in held:
            await websocket.close()


@pytest.mark.slow
async def test_beyond_the_process_cap_a_connection_is_closed_1013_at_once(
    capped_service: str, keys: dict[str, str]
) -> None:
    held = [await open_acknowledged(capped_service) for _ in range(CAP_TOTAL)]
    try:
        async with connect(socket_url(capped_service), subprotocols=[LEGACY_WS]) as refused:  # type: ignore[list-item]
            code, reason, before = await closed_with(refused)
        assert (code, reason, before) == (1013, PROCESS_FULL_REASON, [])
        await held.pop().close()
        held.append(await open_acknowledged(capped_service, keys["read"]))
    finally:
        for websocket in held:
            await websocket.close()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_an_operation_the_key_may_not_run_is_refused_with_its_code(
    capped_service: str, keys: dict[str, str], protocol: str
) -> None:
    query = "{ events(first: 1) { nodes { id } } }"
    for payload, code in (({}, "UNAUTHENTICATED"), ({"X-API-Key": keys["write"]}, "FORBIDDEN")):
        async with GraphQLSocket.open(capped_service, protocol, payload) as socket:
            await send(socket, subscribe("1", {"query": query}, protocol))
            refused = await socket._receive()
        errors = refused["payload"] if protocol == TRANSPORT_WS else [refused["payload"]]
        assert refused["type"] == "error", refused
        assert [error["extensions"]["code"] for error in errors] == [code]


@pytest.mark.slow
async def test_a_legacy_connection_beyond_the_per_key_cap_gets_connection_error_then_1013(
    capped_service: str, keys: dict[str, str]
) -> None:
    held = [await open_acknowledged(capped_service, keys["admin"]) for _ in range(CAP_PER_KEY)]
    try:
        async with raw_socket(capped_service, LEGACY_WS) as socket:
            await send(socket, {"type": "connection_init", "payload": {"X-API-Key": keys["admin"]}})
            code, reason, before = await closed_with(socket.websocket)
    finally:
        for websocket in held:
            await websocket.close()
    assert (code, reason) == (1013, KEY_FULL_REASON)
    assert [(m["type"], m["payload"]["extensions"]["code"]) for m in before] == [
        ("connection_error", "TOO_MANY_CONNECTIONS")
    ]
