"""OpenAPI pieces the REST routes share: the event in and out, the error shapes, common answers."""

from typing import Any

from db.idempotency import MAX_KEY_LENGTH
from db.validation import DEFAULT_EVENT_LIMITS, EMAIL_PATTERN, EVENT_FIELDS

# PostgreSQL text cannot hold NUL, so no stored or searchable text has one (a NUL is a 400).
NO_NUL_PATTERN = r"^[^\x00]*$"
# Visible ASCII, as db.idempotency checks it (documented only: the check answers its own 400 text).
IDEMPOTENCY_KEY_PATTERN = rf"^[!-~]{{1,{MAX_KEY_LENGTH}}}$"
# The legacy `from_date` form: MM-DD-YYYY, single digits allowed (surrounding whitespace ignored).
LEGACY_DATE_PATTERN = r"^(0?[1-9]|1[0-2])-(0?[1-9]|[12][0-9]|3[01])-[0-9]{4}$"


def _text(max_length: int, example: str) -> dict[str, Any]:
    # Not empty or blank (at least one non-whitespace character), and no NUL.
    return {
        "type": "string",
        # At least one character that Python's str.strip() keeps (it also strips \x1c-\x1f and
        # \x85, which ECMA's \s does not cover), and no NUL.
        "pattern": r"^[^\x00]*[^\s\x00\x1c-\x1f\x85][^\x00]*$",
        "maxLength": max_length,
        "example": example,
    }


EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(EVENT_FIELDS),
    "description": "Other fields (a client-sent `id` or `created_at` too) are ignored.",
    "properties": {
        "component": _text(DEFAULT_EVENT_LIMITS.max_component_length, "order"),
        "data": {
            "type": "object",
            "description": (
                f"Any JSON object up to {DEFAULT_EVENT_LIMITS.max_data_bytes} bytes as JSON, nested at most "
                f"{DEFAULT_EVENT_LIMITS.max_data_depth} levels deep, with no NUL character in its keys "
                "or strings (the server's limits may differ; over one is a 400)"
            ),
            "example": {"age": 20},
        },
        "email": {
            "type": "string",
            "pattern": EMAIL_PATTERN.pattern,
            "maxLength": DEFAULT_EVENT_LIMITS.max_email_length,
            "example": "ade@example.com",
        },
        "environment": _text(DEFAULT_EVENT_LIMITS.max_environment_length, "production"),
        "message": _text(DEFAULT_EVENT_LIMITS.max_message_length, "order failed"),
    },
}
_STORED_EVENT_PROPERTIES: dict[str, Any] = {
    "component": {"type": "string"},
    "data": {"type": "object"},
    "email": {"type": ["string", "null"]},
    "environment": {"type": "string"},
    "message": {"type": "string"},
    "id": {"type": "string", "format": "uuid"},
    # Python's str(float) of the epoch seconds.
    "created_at": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$", "example": "1795841501.40572"},
}
STORED_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [*EVENT_FIELDS, "id", "created_at"],
    "properties": _STORED_EVENT_PROPERTIES,
}
# With an `X-Fields` mask, only the fields it names (and the event has) are present.
MASKED_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The fields the X-Fields mask names",
    "properties": _STORED_EVENT_PROPERTIES,
}
EVENT_ANSWER_SCHEMA: dict[str, Any] = {"anyOf": [STORED_EVENT_SCHEMA, MASKED_EVENT_SCHEMA]}
EVENT_LIST_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "required": ["events"],
            "properties": {"events": {"type": "array", "items": STORED_EVENT_SCHEMA}},
        },
        {
            "type": "object",
            "description": "With an X-Fields mask: `events` only if the mask names it, each event masked",
            "properties": {"events": {"type": "array", "items": MASKED_EVENT_SCHEMA}},
        },
    ]
}
MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}},
}
SHAPE_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An OpenAPI response (or request body) of JSON with this schema."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def with_headers(response: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """`response` documenting these headers (name -> description), each a string."""
    described = {name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()}
    return {**response, "headers": described}


BODY_TOO_LARGE = json_content(MESSAGE_SCHEMA, "The request body is over the server's size limit")
HEADERS_TOO_LARGE = json_content(MESSAGE_SCHEMA, "The request's headers are over the server's size limit")
DATABASE_UNAVAILABLE = with_headers(
    json_content(MESSAGE_SCHEMA, "The database does not answer right now; retry shortly"),
    {"Retry-After": "Seconds to wait before retrying"},
)
