"""graphql-transport-ws, every operation through the gate.

**graphql-transport-ws** (graphql-ws's PROTOCOL.md, followed to the letter):
- a message that is not a JSON object with a string `type`, a type a client may not send, a
  `connection_init`/`ping`/`pong` payload that is neither an object nor null, a `subscribe` without
  a non-empty string `id` or whose payload is not `{query: string, variables?, operationName?,
  extensions?}` of the specified types, and binary frames close the socket 4400 with the reason.
  One deliberate exception: `query` may be left out when `extensions.persistedQuery` names the
  document by hash (automatic persisted queries and trusted documents, as over HTTP);
- `connection_init` with an object payload, `null` or none is acknowledged; a second one closes
  4429, none within the wait closes 4408; `subscribe` before the acknowledgement closes 4401, an id
  still in use closes 4409; `ping` is answered `pong` (echoing its payload), `pong` is ignored;
- a refused operation gets one `error` message with every GraphQL error of the refusal, each with
  its `extensions.code`, and no `complete`; an admitted one gets `next` message(s) then `complete`;
  an unexpected failure ends that operation alone with an `error` (INTERNAL_SERVER_ERROR), logged once.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing, suppress
from typing import TYPE_CHECKING, Any

from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.unset import UnsetType

from graphql_schema import gate
from graphql_schema.context import Context
from graphql_schema.errors import client_error
from graphql_schema.websockets.connections import (
    CLOSE_FORBIDDEN,
    CLOSE_SUBSCRIBER_EXISTS,
    CLOSE_TOO_MANY_INITS,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    KEY_FULL_REASON,
    TOO_MANY_OPERATIONS,
    TRANSPORT_WS_CLIENT_MESSAGES,
    CappedConnection,
    Unreadable,
    admitted_results,
    operation_failure,
    refusal,
)
from graphql_schema.websockets.shared_streams import SharedResult

if TYPE_CHECKING:
    from graphql_schema.schema import EventsSchema

log = logging.getLogger(__name__)


class GatedTransportWSHandler(CappedConnection, BaseGraphQLTransportWSHandler[Context, None]):
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
            self,
            operation_id,
            payload.get("query") or "",
            payload.get("variables"),
            payload.get("operationName"),
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
        if isinstance(result, SharedResult):
            if not operation.completed:
                await self.adapter.send_shared(result, {"id": operation.id, "type": "next"})
            return
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
    for name in ("variables", "extensions"):
        if not _object_or_null(payload.get(name)):
            return f"The 'subscribe' payload's '{name}' must be an object or null"
    query = payload.get("query")
    named_by_hash = query is None and (payload.get("extensions") or {}).get("persistedQuery") is not None
    if not isinstance(query, str) and not named_by_hash:
        return "The 'subscribe' payload needs a string 'query'"
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        return "The 'subscribe' payload's 'operationName' must be a string or null"
    return None


def _object_or_null(value: object) -> bool:
    return value is None or isinstance(value, dict)


def _with_payload(message: dict[str, Any], payload: object) -> Any:
    return message if payload is None else {**message, "payload": payload}
