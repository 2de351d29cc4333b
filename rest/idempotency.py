"""The `Idempotency-Key` header, and whose keys a request's are."""

from typing import Annotated

from fastapi import Header, Request

from api.settings import Settings
from db.idempotency import MAX_KEY_LENGTH, check_idempotency_key
from db.writes import KeyScope
from rest.openapi_schemas import IDEMPOTENCY_KEY_PATTERN

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            f"1 to {MAX_KEY_LENGTH} visible ASCII characters. A retry with the same key and the "
            "same event returns the first answer (200, header Idempotent-Replayed: true) and "
            "writes nothing; the same key with another event is a 422."
        ),
        # Documented only: idempotency_key() checks it and answers its own 400 text.
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
    ),
]
REPLAYED_HEADERS = {"Idempotent-Replayed": "true"}


def idempotency_key(header: str | None) -> str | None:
    """The request's key, checked (InvalidIdempotencyKey, a 400, when it is malformed)."""
    return None if header is None else check_idempotency_key(header)


def key_scope(request: Request, settings: Settings) -> KeyScope:
    """Keys belong to the API key that sent them (all to "" while auth is off)."""
    return KeyScope(owner=getattr(request.state, "api_key_id", ""), window=settings.idempotency_window)
