"""API-key enforcement for the REST door (the rule itself lives in db.api_keys)."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.credentials import key_from_headers
from db.api_keys import EVENTS_READ, EVENTS_WRITE
from rest.dependencies import KeyVerifierDep, SettingsDep

# Declared as security schemes so the OpenAPI document (and Swagger UI's Authorize button) shows
# them; the key itself is read by api.credentials.key_from_headers, the one reader for both doors.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")

_SCOPE_BY_METHOD = {"GET": EVENTS_READ, "HEAD": EVENTS_READ, "POST": EVENTS_WRITE}


async def require_event_scope(
    request: Request,
    settings: SettingsDep,
    verifier: KeyVerifierDep,
    _bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _api_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """Reads need `events:read`, writes `events:write`, when AUTH_REQUIRED is on.

    The key's id is kept on `request.state.api_key_id` ("" without auth): idempotency keys are
    scoped to it.
    """
    request.state.api_key_id = ""
    if not settings.auth_required:
        return
    scope = _SCOPE_BY_METHOD.get(request.method, EVENTS_WRITE)
    key = await verifier.authorize(key_from_headers(request.headers), scope)
    request.state.api_key_id = key.id
