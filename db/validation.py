"""What a valid event is. Both doors (REST and GraphQL) validate through this module and no other."""

import math
import re
from dataclasses import dataclass
from typing import Any

from db.json_text import encode_json

# The legacy contract's field order, used for the shape check and for rendering.
EVENT_FIELDS = ("component", "data", "email", "environment", "message")
STRING_FIELDS = ("component", "email", "environment", "message")

# The original service's pattern and matching (re.match, where `$` also matches before a final
# newline), kept exactly so that nothing it accepted is refused now.
EMAIL_PATTERN = re.compile(r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$")


_REPR_LIMIT = 200


@dataclass(frozen=True, slots=True)
class EventLimits:
    """How large an event may be; over a limit is a clear error, never a silent truncation."""

    max_component_length: int = 255
    max_environment_length: int = 255
    max_email_length: int = 320  # RFC 5321's longest address
    max_message_length: int = 32_768
    max_data_bytes: int = 65_536  # `data` encoded as JSON (UTF-8)
    # Python's recursion and PostgreSQL's jsonb operators both have limits far below what a
    # body can nest: a cap answered with a clear error beats a 500 halfway through a write.
    max_data_depth: int = 32

    def max_length(self, field: str) -> int:
        return getattr(self, f"max_{field}_length")


DEFAULT_EVENT_LIMITS = EventLimits()


class PayloadShapeError(Exception):
    """The body is not an object of five correctly typed fields; `errors` maps field -> text."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("Input payload validation failed")
        self.errors = errors


class InvalidEvent(Exception):
    """The body has the right shape but breaks a rule; `reason` is the contract's text."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event a client asked to record, validated, before the server adds id and created_at."""

    component: str
    environment: str
    email: str | None
    message: str
    data: dict[str, Any]


def parse_event_payload(payload: object, limits: EventLimits = DEFAULT_EVENT_LIMITS) -> NewEvent:
    """Check a decoded JSON body the way the legacy API did (shape first, then rules)."""
    if not isinstance(payload, dict):
        raise PayloadShapeError({"": f"{short_repr(payload)} is not of type 'object'"})
    errors: dict[str, str] = {}
    for field in EVENT_FIELDS:
        if field not in payload:
            errors[field] = f"'{field}' is a required property"
            continue
        value = payload[field]
        expected, python_type = ("object", dict) if field == "data" else ("string", str)
        if not isinstance(value, python_type):
            errors[field] = f"{short_repr(value)} is not of type '{expected}'"
    if errors:
        raise PayloadShapeError(errors)
    return validate_event(
        component=payload["component"],
        environment=payload["environment"],
        email=payload["email"],
        message=payload["message"],
        data=payload["data"],
        limits=limits,
    )


def validate_event(
    *,
    component: str,
    environment: str,
    email: str | None,
    message: str,
    data: object,
    limits: EventLimits = DEFAULT_EVENT_LIMITS,
) -> NewEvent:
    """Apply the rules in the contract's order; raise InvalidEvent naming the first broken one."""
    if email is None or not EMAIL_PATTERN.match(email):
        raise InvalidEvent("email", "Invalid email address.")
    for field, value in (("component", component), ("environment", environment), ("message", message)):
        if not value.strip():
            raise InvalidEvent(field, f"{field.capitalize()} can not be empty.")
    for field, value in (
        ("component", component),
        ("environment", environment),
        ("email", email),
        ("message", message),
    ):
        _check_storable_text(field, value)
        if len(value) > limits.max_length(field):
            raise InvalidEvent(
                field, f"{field.capitalize()} is longer than {limits.max_length(field)} characters."
            )
    if not isinstance(data, dict):
        raise InvalidEvent("data", "Data must be a JSON object.")
    _check_storable_json(data, depth=1, max_depth=limits.max_data_depth)
    if len(encode_json(data).encode()) > limits.max_data_bytes:
        raise InvalidEvent("data", f"Data is larger than {limits.max_data_bytes} bytes as JSON.")
    return NewEvent(component=component, environment=environment, email=email, message=message, data=data)


def _check_storable_text(field: str, value: str) -> None:
    """PostgreSQL text holds neither NUL nor lone UTF-16 surrogates: refuse them, loudly."""
    if "\x00" in value:
        raise InvalidEvent(field, f"{field.capitalize()} can not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(field, f"{field.capitalize()} is not valid Unicode text.") from None


def _check_storable_json(value: object, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise InvalidEvent("data", f"Data is nested deeper than {max_depth} levels.")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_storable_text("data", key)
            _check_storable_json(item, depth + 1, max_depth)
    elif isinstance(value, list):
        for item in value:
            _check_storable_json(item, depth + 1, max_depth)
    elif isinstance(value, str):
        _check_storable_text("data", value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent("data", "Data can not contain NaN or Infinity.")


def short_repr(value: object) -> str:
    """repr() of a client value for an error message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."
