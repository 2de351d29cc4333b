"""The legacy graphql-ws protocol (subscriptions-transport-ws), every operation through the gate.

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
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing, suppress
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.execution import ExecutionResult, PreExecutionError

from graphql_schema import gate
from graphql_schema.context import Context
from graphql_schema.errors import BAD_REQUEST, client_error
from graphql_schema.websockets.connections import (
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    KEY_FULL_REASON,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_OPERATIONS,
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


class GatedLegacyWSHandler(CappedConnection, BaseGraphQLWSHandler[Context, None]):
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
                if isinstance(result, SharedResult):
                    await self.adapter.send_shared(result, {"type": "data", "id": operation_id})
                    continue
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
