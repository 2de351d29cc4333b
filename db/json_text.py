"""JSON documents as the text PostgreSQL's jsonb takes and renders, both ways, every digit kept."""

import json
import re
from typing import Any

import orjson


def encode_json(document: object) -> str:
    """`document` as JSON text; integers beyond 64 bits keep every digit (orjson refuses them)."""
    return json_bytes(document).decode()


def json_bytes(document: object) -> bytes:
    """`document` as UTF-8 JSON bytes, with orjson where it can (it refuses integers beyond 64 bits)."""
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


# orjson reads integers beyond 64 bits as floats; a run of 19 digits or more may be one, and sends
# the text to the exact (slower) parser.
_LONG_NUMBER = re.compile(r"\d{19}")


def decode_json(text: str) -> Any:
    """JSON text (as PostgreSQL renders `data::text`) as Python values, integers of any size exact."""
    return json.loads(text) if _LONG_NUMBER.search(text) else orjson.loads(text)
