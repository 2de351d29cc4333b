"""Request bodies as the original (Flask) service read them."""

import json

from fastapi import Request

from rest.errors import MalformedBody


def content_type_of(request: Request) -> str:
    """The media type alone, lower-case (`application/json; charset=utf-8` -> `application/json`)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def loads_json(text: bytes) -> object:
    """Decode JSON strictly; anything else (NaN/Infinity, bad UTF-8, absurd nesting) is MalformedBody."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise MalformedBody() from None


def decode_json_body(body: bytes, request: Request) -> object:
    """The body as Flask's `request.json` saw it: None unless it is declared JSON.

    Declared JSON but empty is malformed JSON, as it was for Flask (json.loads of nothing fails).
    """
    return loads_json(body) if is_json(content_type_of(request)) else None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
