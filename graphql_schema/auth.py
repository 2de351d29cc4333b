"""API-key enforcement for the GraphQL door (the rule itself lives in db.api_keys)."""

from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.permission import BasePermission

from db.api_keys import EVENTS_READ, EVENTS_WRITE, NotAuthenticated, NotPermitted, key_from_headers
from graphql_schema.context import Context

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"


def presented_key(context: Context) -> str | None:
    """The key of this request: HTTP headers, or a websocket's `connection_init` payload.

    The payload uses the header names: {"Authorization": "Bearer <key>"} or {"X-API-Key": "<key>"}.
    """
    request = context.request
    if isinstance(request, WebSocket):
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        return key_from_headers({str(k).lower(): v for k, v in params.items() if isinstance(v, str)})
    return key_from_headers(request.headers) if request is not None else None


class _RequireScope(BasePermission):
    """Refuse the field unless AUTH_REQUIRED is off or the key holds `scope`."""

    scope: str

    async def has_permission(self, source: Any, info: strawberry.Info[Context, None], **kwargs: Any) -> bool:
        context = info.context
        if not context.settings.auth_required:
            return True
        verifier = context.request.app.state.key_verifier  # type: ignore[union-attr]
        try:
            key = await verifier.authorize(presented_key(context), self.scope)
        except NotAuthenticated as error:
            raise GraphQLError(str(error), extensions={"code": UNAUTHENTICATED}) from None
        except NotPermitted as error:
            raise GraphQLError(str(error), extensions={"code": FORBIDDEN}) from None
        context.api_key_id = key.id  # idempotency keys are scoped to the API key
        return True


class CanReadEvents(_RequireScope):
    scope = EVENTS_READ


class CanWriteEvents(_RequireScope):
    scope = EVENTS_WRITE
