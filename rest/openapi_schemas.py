"""OpenAPI pieces the REST routes share: the event in and out, the error shape."""

from typing import Any

from db.validation import DEFAULT_EVENT_LIMITS, EMAIL_PATTERN, EVENT_FIELDS


def _text(max_length: int, example: str) -> dict[str, Any]:
    # Not empty or blank: at least one non-whitespace character (the validation's rule).
    return {"type": "string", "pattern": r"\S", "maxLength": max_length, "example": example}


EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(EVENT_FIELDS),
    "properties": {
        "component": _text(DEFAULT_EVENT_LIMITS.max_component_length, "order"),
        "data": {"type": "object", "example": {"age": 20}},
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
STORED_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [*EVENT_FIELDS, "id", "created_at"],
    "properties": {
        "component": {"type": "string"},
        "data": {"type": "object"},
        "email": {"type": ["string", "null"]},
        "environment": {"type": "string"},
        "message": {"type": "string"},
        "id": {"type": "string", "format": "uuid"},
        "created_at": {"type": "string", "example": "1795841501.40572"},
    },
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
