"""Events as the legacy API writes them: fixed key order, created_at as a string of epoch seconds."""

from collections.abc import Mapping
from typing import Any

import orjson

from db.json_text import decode_json

_dumps = orjson.dumps


def created_at_text(record: Mapping[str, Any]) -> str:
    """Epoch seconds as Python's str(float) writes them: "1795841501.40572" (true UTC)."""
    return repr(record["created_at"].timestamp())


def event_json(record: Mapping[str, Any], end: bytes = b'"}') -> bytes:
    """One event as JSON bytes, `data` copied through as the database rendered it. `end` closes
    the object after created_at's opening quote and text: the export adds a key there."""
    return b"".join(
        (
            b'{"component":',
            _dumps(record["component"]),
            b',"data":',
            record["data"].encode(),
            b',"email":',
            _dumps(record["email"]),
            b',"environment":',
            _dumps(record["environment"]),
            b',"message":',
            _dumps(record["message"]),
            b',"id":"',
            str(record["id"]).encode(),
            b'","created_at":"',
            created_at_text(record).encode(),
            end,
        )
    )


def event_dict(record: Mapping[str, Any]) -> dict[str, Any]:
    """One event as a dict in the contract's key order (for masking; slower than event_json)."""
    return {
        "component": record["component"],
        "data": decode_json(record["data"]),  # every digit, as event_json and GraphQL keep them
        "email": record["email"],
        "environment": record["environment"],
        "message": record["message"],
        "id": str(record["id"]),
        "created_at": created_at_text(record),
    }
