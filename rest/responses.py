"""JSON responses the way every /api answer is made: UTF-8 JSON bytes, `application/json`."""

from collections.abc import Mapping

from fastapi.responses import Response

from db.json_text import json_bytes


def json_response(body: object, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Serialise `body` (every digit of big integers kept), or send bytes as they are, as application/json."""
    content = body if isinstance(body, bytes) else json_bytes(body)
    return Response(content, status_code=status_code, headers=headers, media_type="application/json")


def message_response(message: str, status_code: int, headers: Mapping[str, str] | None = None) -> Response:
    """The contract's error shape: `{"message": ...}`."""
    return json_response({"message": message}, status_code, headers)
