"""JSON documents as the text PostgreSQL's jsonb parameters take."""

import json

import orjson


def encode_json(document: object) -> str:
    """`document` as JSON text; integers beyond 64 bits keep every digit (orjson refuses them)."""
    try:
        return orjson.dumps(document).decode()
    except TypeError:
        return json.dumps(document, ensure_ascii=False, allow_nan=False)
