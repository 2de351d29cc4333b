"""GraphQL over websockets: both subprotocols, every operation through the gate, connections capped.

Each operation a client sends passes `gate.operation_request` and `gate.admit` (parse, operation,
validation, variables, cost, per-field authorization) before Strawberry runs any of it; a refusal
is an error message to that operation, never a closed socket and never a traceback.

**graphql-transport-ws** (graphql-ws's PROTOCOL.md, followed to the letter):
- a message that is not a JSON object with a string `type`, a type a client may not send, a
  `connection_init`/`ping`/`pong` payload that is neither an object nor null, a `subscribe` without
  a non-empty string `id` or whose payload is not `{query: string, variables?, operationName?,
  extensions?}` of the specified types, and binary frames close the socket 4400 with the reason;
- `connection_init` with an object payload, `null` or none is acknowledged; a second one closes
  4429, none within the wait closes 4408; `subscribe` before the acknowledgement closes 4401, an id
  still in use closes 4409; `ping` is answered `pong` (echoing its payload), `pong` is ignored;
- a refused operation gets one `error` message with every GraphQL error of the refusal, each with
  its `extensions.code`, and no `complete`; an admitted one gets `next` message(s) then `complete`;
  an unexpected failure ends that operation alone with an `error` (INTERNAL_SERVER_ERROR), logged once.

**graphql-ws** (the legacy subscriptions-transport-ws protocol): queries and mutations are SERVED,
not only subscriptions (Python's `gql` client fetches the schema that way): `data` per result, then
`complete`. That protocol defines no close codes for client mistakes, so they are answered, and the
socket stays open: an unreadable frame, a message that is not an object with a string `type`, or a
`start`/`stop` without a non-empty string `id` gets `connection_error`; an unknown type, a malformed
`start` payload or a refused operation gets `error` for that id. Either payload is one GraphQL error
object with `extensions.code` (the first error of a refusal). A `connection_init` payload that is not
an object gets `connection_error` and the socket is closed 1000, a second `connection_init` gets
`connection_error` (the first one's key stays); `start` before `connection_init` closes 4401, binary
frames close 1002. `stop` ends a running operation with `complete`; a `start` reusing a running id
replaces that operation, as the protocol's reference server does.

**Connection caps**, per server process (each worker counts its own). Beyond
GRAPHQL_MAX_WEBSOCKETS the handshake is accepted and the socket closed at once with 1013 "Try Again
Later" (with a reason), rather than refused with HTTP 403: a browser cannot tell a 403 handshake
from an origin refusal or a network failure, while a close code reaches the client's close event,
and graphql-ws retries a 1013 with backoff. Beyond GRAPHQL_MAX_WEBSOCKETS_PER_KEY connections with
the same API key (known at `connection_init`, counted only when AUTH_REQUIRED is on) the socket is
closed 1013 after `connection_init`, before the acknowledgement (the legacy protocol first gets a
`connection_error` with code TOO_MANY_CONNECTIONS). Every slot is released when the connection
ends, however it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from graphql import GraphQLError, OperationType
from starlette.websockets import WebSocketDisconnect, WebSocketState
from starlette.websockets import WebSocketDisconnected as SocketAlreadyClosed
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.unset import UnsetType

from graphql_schema import gate
from graphql_schema.context import Context
from graphql_schema.errors import BAD_REQUEST, client_error, log_server_errors

if TYPE_CHECKING:
    from strawberry.schema.schema import StreamResult

    from api.settings import Settings
    from graphql_schema.schema import EventsSchema

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_SUBSCRIBER_EXISTS = 4409
CLOSE_TOO_MANY_INITS = 4429
# A close frame carries at most 125 bytes: the code takes two.
MAX_CLOSE_REASON_BYTES = 123

TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
TOO_MANY_OPERATIONS = "TOO_MANY_OPERATIONS"
PROCESS_FULL_REASON = "Too many websocket connections: try again later"
KEY_FULL_REASON = "Too many websocket connections with this API key: try again later"

# Websockets serve every operation type; HTTP has its own rules (graphql_schema.http_transport).
EVERY_OPERATION_TYPE = frozenset(OperationType)
# What a graphql-transport-ws client may send; `connection_ack`, `next` and `error` are the server's.
TRANSPORT_WS_CLIENT_MESSAGES = frozenset({"connection_init", "ping", "pong", "subscribe", "complete"})


class WebsocketSlots:
    """The websockets one server process holds, in all and per API key, against their caps."""

    def __init__(self, max_total: int, max_per_key: int) -> None:
        self.max_total = max_total
        self.max_per_key = max_per_key
        self.total = 0
        self._per_key: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings) -> WebsocketSlots:
        return cls(settings.graphql_max_websockets, settings.graphql_max_websockets_per_key)

    def open_connection(self) -> bool:
        """Count one more connection; False, counting nothing, when the process is at its cap."""
        if self.total >= self.max_total:
            return False
        self.total += 1
        return True

    def claim_key(self, key: str) -> str | None:
        """Count the connection under `key`: the token to release later, or None at the key's cap."""
        # A digest, so the table of live connections holds no usable key.
        token = hashlib.sha256(key.encode()).hexdigest()
        if self._per_key[token] >= self.max_per_key:
            return None
        self._per_key[token] += 1
        return token

    def close_connection(self, key_token: str | None) -> None:
        """Release what one connection held: its place in the total and its key's claim if any."""
        self.total -= 1
        if key_token is not None:
            self._per_key[key_token] -= 1
            if self._per_key[key_token] <= 0:
                del self._per_key[key_token]


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A frame that is not a JSON text message; each protocol decides what to answer."""

    reason: str
    binary: bool = False


class GatedWebSocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's websocket adapter, made safe to use on any input and after the socket closed."""

    async def messages(self) -> AsyncIterator[object]:
        """Each text frame decoded from JSON, or an `Unreadable`, until the socket closes."""
        while self.ws.application_state is WebSocketState.CONNECTED:
            try:
                text = await self.ws.receive_text()
            except WebSocketDisconnect:
                return
            except KeyError:  # a binary frame has no "text"
                yield Unreadable("WebSocket message type must be text", binary=True)
                continue
            try:
                message = self.view.decode_json(text)
            # Not only JSONDecodeError: very deep nesting is a RecursionError and a number of
            # thousands of digits a plain ValueError. Neither is worth a traceback.
            except (ValueError, RecursionError):
                message = Unreadable("WebSocket message must be valid JSON")
            yield message

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await super().send_json(message)
        except SocketAlreadyClosed as closed:
            # We closed it (a protocol error, say) while an operation was still answering.
            raise WebSocketDisconnected from closed

    async def close(self, code: int, reason: str) -> None:
        """Close once; later calls, or a peer that is already gone, are not errors."""
        if self.ws.application_state is not WebSocketState.CONNECTED:
            return
        with suppress(WebSocketDisconnect):
            await super().close(code, close_reason(reason))


def close_reason(reason: str) -> str:
    """`reason` cut to what a close frame can carry (a longer one fails the close itself)."""
    encoded = reason.encode()
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[: MAX_CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "..."


async def admitted_results(schema: EventsSchema, payload: object, context: Context) -> StreamResult:
    """The results of the operation in `payload` once the gate has let it through.

    Raises `gate.RequestRefused` when the gate refuses it: then nothing of it has run.
    """
    request = gate.operation_request(payload)
    await gate.admit(schema, request, context, EVERY_OPERATION_TYPE)
    return await schema.stream(
        request.query,
        variable_values=request.variables,
        context_value=context,
        operation_name=request.operation_name,
    )


def operation_failure(error: Exception) -> GraphQLError:
    """What the client is told of an operation that failed unexpectedly; the log gets it once."""
    if not isinstance(error, GraphQLError):
        error = GraphQLError(str(error), original_error=error)
    log_server_errors([error])
    return client_error(error)


def refusal(message: str, code: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


class _CappedConnection:
    """What both protocol handlers share: the caps, from the handshake to the end of the socket."""

    view: Any
    websocket: Any
    context: Context
    _key_token: str | None = None

    @property
    def slots(self) -> WebsocketSlots:
        return cast(WebsocketTransports, self.view).websocket_slots

    @property
    def adapter(self) -> GatedWebSocketAdapter:
        return cast(GatedWebSocketAdapter, self.websocket)

    async def serve_capped(self, serve: Callable[[], Awaitable[None]]) -> None:
        """Run `serve` if the process has room for one more socket; close 1013 otherwise."""
        if not self.slots.open_connection():
            log.warning("refused a websocket: %d are open (GRAPHQL_MAX_WEBSOCKETS)", self.slots.total)
            await self.websocket.close(CLOSE_TRY_AGAIN_LATER, PROCESS_FULL_REASON)
            return
        try:
            await serve()
        finally:
            self.slots.close_connection(self._key_token)

    def claim_key(self) -> bool:
        """Count this connection under the key of its `connection_init`; False at the key's cap."""
        key = self.context.presented_key() if self.context.settings.auth_required else None
        if key is None:  # no key (or keys off): only the total applies
            return True
        self._key_token = self.slots.claim_key(key)
        if self._key_token is None:
            log.warning("refused a websocket: its API key is at GRAPHQL_MAX_WEBSOCKETS_PER_KEY")
            return False
        return True


class GatedTransportWSHandler(_CappedConnection, BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws to the letter of its PROTOCOL.md, every operation through the gate."""

    schema: EventsSchema  # type: ignore[assignment]

    async def handle(self) -> None:
        await self.serve_capped(self._serve)

    async def _serve(self) -> None:
        self.on_request_accepted()  # starts the connection_init wait (4408)
        try:
            async with aclosing(self.adapter.messages()) as messages:
                async for message in messages:
                    if isinstance(message, Unreadable):
                        await self.handle_invalid_message(message.reason)
                    else:
                        await self.handle_message(message)  # type: ignore[arg-type]
        except WebSocketDisconnected:
            pass
        finally:
            await self.shutdown()

    async def handle_message(self, message: Any) -> None:
        problem = transport_ws_violation(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        kind = message["type"]
        if kind == "connection_init":
            await self.handle_connection_init(message)
        elif kind == "ping":
            await self.send_message(_with_payload({"type": "pong"}, message.get("payload")))
        elif kind == "subscribe":
            await self.handle_subscribe(message)
        elif kind == "complete":
            await self.handle_complete(message)
        # `pong` needs no answer (it may even come unsolicited, as a heartbeat).

    async def handle_connection_init(self, message: Any) -> None:
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task is not None:
            self.connection_init_timeout_task.cancel()
        if self.connection_init_received:
            await self.websocket.close(CLOSE_TOO_MANY_INITS, "Too many initialisation requests")
            return
        self.connection_init_received = True
        # The protocol allows a null or absent payload: the same as an empty one.
        self.context.connection_params = message.get("payload") or {}
        if not self.claim_key():
            await self.websocket.close(CLOSE_TRY_AGAIN_LATER, KEY_FULL_REASON)
            return
        try:
            ack_payload = await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError:
            await self.websocket.close(CLOSE_FORBIDDEN, "Forbidden")
            return
        ack = {"type": "connection_ack"}
        await self.send_message(
            ack if isinstance(ack_payload, UnsetType) else {**ack, "payload": ack_payload}
        )  # type: ignore[arg-type]
        self.connection_acknowledged = True

    async def handle_subscribe(self, message: Any) -> None:
        if not self.connection_acknowledged:
            await self.websocket.close(CLOSE_UNAUTHORIZED, "Unauthorized")
            return
        operation_id: str = message["id"]
        if operation_id in self.operations:
            await self.websocket.close(
                CLOSE_SUBSCRIBER_EXISTS, f"Subscriber for {operation_id} already exists"
            )
            return
        limit = self.max_subscriptions_per_connection
        if limit is not None and len(self.operations) >= limit:
            error = refusal(
                f"At most {limit} operations may run at once on one connection.", TOO_MANY_OPERATIONS
            )
            await self.send_message({"id": operation_id, "type": "error", "payload": [error.formatted]})
            return
        payload = message["payload"]
        operation: Operation[Context, None] = Operation(
            self, operation_id, payload["query"], payload.get("variables"), payload.get("operationName")
        )
        # Registered before it runs, so a `complete` or a reused id finds it at once.
        operation.task = asyncio.create_task(self._run(operation, payload))
        operation.task.add_done_callback(self._task_done)
        self.operations[operation_id] = operation

    async def _run(self, operation: Operation[Context, None], payload: object) -> None:
        """Admit the operation, run it, and end it with `complete`, or with one `error`."""
        with suppress(WebSocketDisconnected):  # the client is gone: nobody left to tell
            try:
                await self._execute(operation, payload)
            except gate.RequestRefused as refused:
                await operation.send_initial_errors(refused.errors)
            except WebSocketDisconnected:
                raise
            except Exception as error:
                await operation.send_initial_errors([operation_failure(error)])

    async def _execute(self, operation: Operation[Context, None], payload: object) -> None:
        results = await admitted_results(self.schema, payload, self.context)
        async with aclosing(results):
            async for result in results:
                await self._send_result(operation, result)
        # A no-op after an `error`: the operation is already over.
        await operation.send_operation_message({"id": operation.id, "type": "complete"})

    async def _send_result(self, operation: Operation[Context, None], result: object) -> None:
        if isinstance(result, PreExecutionError):
            # The gate validated the same document, so this should not happen; answered all the same.
            await operation.send_initial_errors([client_error(error) for error in result.errors or ()])
        elif isinstance(result, ExecutionResult):
            await operation.send_next(result)
        else:
            raise TypeError(f"incremental delivery is not served over websockets: {type(result).__name__}")

    def forget_id(self, id: str) -> None:
        # The operation may already be gone (the client completed it while it was answering).
        self.operations.pop(id, None)


def transport_ws_violation(message: object) -> str | None:
    """Why `message` is not one a graphql-transport-ws client may send (the 4400 reason), or None."""
    if not isinstance(message, dict):
        return "A message must be a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "A message needs a string 'type'"
    if kind not in TRANSPORT_WS_CLIENT_MESSAGES:
        return f"Unexpected message of type {kind}"
    if kind in ("connection_init", "ping", "pong"):
        if not _object_or_null(message.get("payload")):
            return f"The '{kind}' payload must be an object or null"
        return None
    operation_id = message.get("id")
    if not isinstance(operation_id, str) or not operation_id:
        return f"A '{kind}' message needs a non-empty string 'id'"
    return _subscribe_payload_violation(message.get("payload")) if kind == "subscribe" else None


def _subscribe_payload_violation(payload: object) -> str | None:
    if not isinstance(payload, dict):
        return "The 'subscribe' payload must be an object"
    if not isinstance(payload.get("query"), str):
        return "The 'subscribe' payload needs a string 'query'"
    for name in ("variables", "extensions"):
        if not _object_or_null(payload.get(name)):
            return f"The 'subscribe' payload's '{name}' must be an object or null"
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        return "The 'subscribe' payload's 'operationName' must be a string or null"
    return None


def _object_or_null(value: object) -> bool:
    return value is None or isinstance(value, dict)


def _with_payload(message: dict[str, Any], payload: object) -> Any:
    return message if payload is None else {**message, "payload": payload}


class GatedLegacyWSHandler(_CappedConnection, BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws protocol: queries, mutations and subscriptions, through the gate."""

    schema: EventsSchema  # type: ignore[assignment]

    async def handle(self) -> None:
        await self.serve_capped(self._serve)

    async def _serve(self) -> None:
        try:
            async with aclosing(self.adapter.messages()) as messages:
                async for message in messages:
                    if isinstance(message, Unreadable) and message.binary:
                        await self.websocket.close(CLOSE_PROTOCOL_ERROR, message.reason)
                    elif isinstance(message, Unreadable):
                        await self._connection_error(message.reason, BAD_REQUEST)
                    else:
                        await self.handle_message(message)  # type: ignore[arg-type]
        except WebSocketDisconnected:
            pass
        finally:
            if self.keep_alive_task:
                self.keep_alive_task.cancel()
                with suppress(BaseException):
                    await self.keep_alive_task
            await self.cleanup()

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self._connection_error("A message must be a JSON object with a string 'type'.", BAD_REQUEST)
            return
        kind = message["type"]
        handlers = {
            "connection_init": self.handle_connection_init,
            "connection_terminate": self.handle_connection_terminate,
            "start": self.handle_start,
            "stop": self.handle_stop,
        }
        if kind not in handlers:
            await self._refuse(message.get("id"), refusal(f"Unknown message type '{kind}'.", BAD_REQUEST))
        elif kind in ("start", "stop") and not (isinstance(message.get("id"), str) and message["id"]):
            await self._connection_error(f"A '{kind}' message needs a non-empty string 'id'.", BAD_REQUEST)
        else:
            await handlers[kind](message)

    async def handle_connection_init(self, message: Any) -> None:
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self._connection_error(
                "The 'connection_init' payload must be an object or null.", BAD_REQUEST
            )
            await self.websocket.close(CLOSE_NORMAL, "")
            return
        if self.connection_acknowledged:
            # Its key is the one the connection was counted and authorized under: it stays.
            await self._connection_error("The connection is already initialised.", BAD_REQUEST)
            return
        self.context.connection_params = payload or {}
        if not self.claim_key():
            await self._connection_error(KEY_FULL_REASON, TOO_MANY_CONNECTIONS)
            await self.websocket.close(CLOSE_TRY_AGAIN_LATER, KEY_FULL_REASON)
            return
        await super().handle_connection_init({**message, "payload": payload or {}})

    async def handle_start(self, message: Any) -> None:
        if not self.connection_acknowledged:
            await self.websocket.close(CLOSE_UNAUTHORIZED, "Unauthorized")
            return
        operation_id: str = message["id"]
        if operation_id in self.tasks:  # the protocol's reference server restarts a reused id
            await self.cleanup_operation(operation_id)
        limit = self.max_subscriptions_per_connection
        if limit is not None and len(self.tasks) >= limit:
            error = refusal(
                f"At most {limit} operations may run at once on one connection.", TOO_MANY_OPERATIONS
            )
            await self._refuse(operation_id, error)
            return
        self.tasks[operation_id] = asyncio.create_task(self._run(operation_id, message.get("payload")))

    async def handle_stop(self, message: Any) -> None:
        operation_id: str = message["id"]
        if operation_id not in self.tasks:
            return  # already over (it sent its own `complete` or `error`), or never started
        await self.cleanup_operation(operation_id)
        # Sent here, not by the cancelled task: a task cancelled before it ever ran sends nothing.
        await self.send_message({"type": "complete", "id": operation_id})

    async def _run(self, operation_id: str, payload: object) -> None:
        """Admit the operation, send each result as `data`, then `complete`; or one `error`."""
        try:
            with suppress(WebSocketDisconnected):  # the client is gone: nobody left to tell
                try:
                    await self._execute(operation_id, payload)
                except gate.RequestRefused as refused:
                    await self._end(operation_id, refused.errors[0])
                except WebSocketDisconnected:
                    raise
                except Exception as error:
                    await self._end(operation_id, operation_failure(error))
        finally:
            self._forget(operation_id)

    async def _execute(self, operation_id: str, payload: object) -> None:
        results = await admitted_results(self.schema, payload, self.context)
        async with aclosing(results):
            async for result in results:
                if isinstance(result, PreExecutionError):  # not expected after the gate
                    await self._end(operation_id, client_error((result.errors or [])[0]))
                    return
                if not isinstance(result, ExecutionResult):
                    raise TypeError(f"incremental delivery is not served: {type(result).__name__}")
                await self.send_data_message(result, operation_id)
        await self._end(operation_id)

    async def _end(self, operation_id: str, error: GraphQLError | None = None) -> None:
        """The operation's last message: `complete`, or `error` when it carries one."""
        # Forgotten first: a `stop` crossing this message then finds nothing to stop or complete.
        self._forget(operation_id)
        if error is None:
            await self.send_message({"type": "complete", "id": operation_id})
        else:
            await self._refuse(operation_id, error)

    def _forget(self, operation_id: str) -> None:
        # Only this task's own entry: a `start` reusing the id may have registered a new one.
        if self.tasks.get(operation_id) is asyncio.current_task():
            del self.tasks[operation_id]

    async def _refuse(self, operation_id: object, error: GraphQLError) -> None:
        """An `error` message for one operation (the id is left out when the client sent none)."""
        message: dict[str, Any] = {"type": "error", "payload": error.formatted}
        if isinstance(operation_id, str):
            message["id"] = operation_id
        await self.send_message(message)  # type: ignore[arg-type]

    async def _connection_error(self, message: str, code: str) -> None:
        error = refusal(message, code)
        await self.send_message({"type": "connection_error", "payload": error.formatted})  # type: ignore[typeddict-item]


class WebsocketTransports:
    """Router mixin: both websocket protocols through the gate, with the connection caps.

    `schema` is the router's; the caps come from its settings and are counted per router, that is
    per app and so per server process.
    """

    graphql_transport_ws_handler_class = GatedTransportWSHandler
    graphql_ws_handler_class = GatedLegacyWSHandler
    websocket_adapter_class = GatedWebSocketAdapter
    schema: Any

    @cached_property
    def websocket_slots(self) -> WebsocketSlots:
        """This process's connection counts (made on the first connection)."""
        return WebsocketSlots.from_settings(cast("EventsSchema", self.schema).settings)
