"""What both websocket protocols share: the gate, the connection caps, a safe socket adapter.

Each operation a client sends passes `gate.operation_request` and `gate.admit` (the document, sent
or named by hash in `extensions.persistedQuery`; parse, operation, validation, variables, cost,
per-field authorization) before Strawberry runs any of it; a refusal is an error message to that
operation, never a closed socket and never a traceback.

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

import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from graphql import FieldNode, GraphQLError, OperationType, get_operation_ast
from graphql.execution.values import VariableValues, get_argument_values
from starlette.websockets import WebSocketDisconnect, WebSocketState
from starlette.websockets import WebSocketDisconnected as SocketAlreadyClosed
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected

from graphql_schema import gate
from graphql_schema.context import Context
from graphql_schema.errors import client_error, log_server_errors
from graphql_schema.websockets.shared_streams import SharedResult, share_key

if TYPE_CHECKING:
    from strawberry.schema.schema import StreamResult

    from api.settings import Settings
    from graphql_schema.schema import EventsSchema
    from graphql_schema.websockets import WebsocketTransports

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

    async def send_shared(self, result: SharedResult, envelope: dict[str, Any]) -> None:
        """A shared result in `envelope` (id and type), its payload encoded once for all sockets."""
        try:
            await self.ws.send_text(result.message(envelope, self.view.encode_json))
        except SocketAlreadyClosed as closed:
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


async def admitted_results(schema: EventsSchema, payload: object, context: Context) -> Any:
    """The results of the operation in `payload` once the gate has let it through.

    A live subscription (no `after`) joins the shared stream of its equals (shared_streams), whose
    results are `SharedResult`s. Raises `gate.RequestRefused` when the gate refuses the operation:
    then nothing of it has run.
    """
    sent = gate.operation_request(payload)
    admitted = await gate.admit(schema, sent, context, EVERY_OPERATION_TYPE)
    request = admitted.request
    query = request.query
    assert query is not None  # the gate found the document's text

    def open_stream(with_context: Context) -> Awaitable[StreamResult]:
        return schema.stream(
            query,
            variable_values=request.variables,
            context_value=with_context,
            operation_name=request.operation_name,
        )

    if schema.shared_streams is not None and _follows_from_now(schema, query, request, admitted.variables):
        key = share_key(query, request.operation_name, request.variables, context)
        return schema.shared_streams.results(key, context, open_stream)
    return await open_stream(context)


def _follows_from_now(
    schema: EventsSchema, query: str, request: gate.OperationRequest, variables: VariableValues
) -> bool:
    """Whether the operation is a subscription to the live feed from now on (no `after` given)."""
    operation = get_operation_ast(schema.parsed(query), request.operation_name)
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        return False
    root = schema._schema.subscription_type
    fields = operation.selection_set.selections
    if root is None or len(fields) != 1 or not isinstance(fields[0], FieldNode):
        return False
    field = root.fields.get(fields[0].name.value)
    if field is None:
        return False
    return get_argument_values(field, fields[0], variables).get("after") is None


def operation_failure(error: Exception) -> GraphQLError:
    """What the client is told of an operation that failed unexpectedly; the log gets it once."""
    if not isinstance(error, GraphQLError):
        error = GraphQLError(str(error), original_error=error)
    log_server_errors([error])
    return client_error(error)


def refusal(message: str, code: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


class CappedConnection:
    """What both protocol handlers share: the caps, from the handshake to the end of the socket."""

    view: Any
    websocket: Any
    context: Context
    _key_token: str | None = None

    @property
    def slots(self) -> WebsocketSlots:
        return cast("WebsocketTransports", self.view).websocket_slots

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
