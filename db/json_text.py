"""JSON documents as the text PostgreSQL's jsonb takes and renders, both ways, every digit kept."""

import json
import re
from datetime import UTC, datetime
from typing import Any

import orjson


def encode_json(document: object) -> str:
    """`document` as JSON text; integers beyond 64 bits keep every digit (orjson refuses them).

    Also the canonical text idempotency fingerprints hash (db.idempotency): its output must not change.
    """
    try:
        return orjson.dumps(document).decode()
    except TypeError:
        return json.dumps(document, ensure_ascii=False, allow_nan=False)


def json_bytes(document: object) -> bytes:
    """`document` as JSON bytes for a response, with orjson where it can.

    orjson refuses integers beyond 64 bits and lone surrogates (a message may quote one back); the
    standard library writes both, in ASCII, so a surrogate becomes a `\\ud800` escape rather than
    invalid UTF-8. A datetime is written as its `isoformat()`, by either (orjson's own format is
    the same for every offset of whole minutes: tests/db/test_json_text.py).
    """
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, allow_nan=False, separators=(",", ":"), default=_isoformat).encode()


def written_as_isoformat(value: object) -> bool:
    """Whether orjson writes `value` as the text of its `isoformat()`: true of a UTC moment (every
    timestamp the database hands back), several times faster than calling it."""
    return type(value) is datetime and value.tzinfo is UTC


def isoformat_bytes(moment: datetime) -> bytes:
    """`moment.isoformat()` as bytes."""
    if written_as_isoformat(moment):
        return orjson.dumps(moment)[1:-1]
    return moment.isoformat().encode()


def _isoformat(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def canonical_json(document: object) -> bytes:
    """`document` as JSON with its keys sorted: equal values, equal bytes (for keys of caches)."""
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# orjson reads integers beyond 64 bits as floats; a run of 19 digits or more may be one, and sends
# the text to the exact (slower) parser.
_LONG_NUMBER = re.compile(r"\d{19}")


def decode_json(text: str) -> Any:
    """JSON text (as PostgreSQL renders `data::text`) as Python values, integers of any size exact."""
    return json.loads(text) if _LONG_NUMBER.search(text) else orjson.loads(text)
