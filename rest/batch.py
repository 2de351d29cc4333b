"""POST /api/events/batch: many events in one request, all recorded or none."""

from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.settings import Settings
from db.batches import IDEMPOTENCY_KEY_FIELD, BatchTooLarge, check_batch_size, check_items
from db.idempotency import MAX_KEY_LENGTH, InvalidIdempotencyKey, check_idempotency_key
from db.validation import EventLimits, NewEvent, PayloadShapeError, parse_event_payload, short_repr
from db.writes import record_many
from rest.auth import require_event_scope
from rest.bodies import content_type_of, is_json, loads_json
from rest.dependencies import DatabaseDep, SettingsDep
from rest.errors import MalformedBody
from rest.idempotency import key_scope
from rest.openapi_schemas import (
    BODY_TOO_LARGE,
    DATABASE_UNAVAILABLE,
    EVENT_SCHEMA,
    IDEMPOTENCY_KEY_PATTERN,
    MESSAGE_SCHEMA,
    STORED_EVENT_SCHEMA,
    json_content,
)
from rest.rendering import event_json
from rest.responses import json_response, message_response

router = APIRouter(tags=["events"], dependencies=[Depends(require_event_scope)])

NDJSON = "application/x-ndjson"
# A batch item is an event plus, optionally, its own idempotency key.
BATCH_ITEM_SCHEMA: dict[str, Any] = {
    **EVENT_SCHEMA,
    "properties": {
        **EVENT_SCHEMA["properties"],
        IDEMPOTENCY_KEY_FIELD: {
            "type": ["string", "null"],
            "pattern": IDEMPOTENCY_KEY_PATTERN,
            "description": "Optional: this event's idempotency key",
        },
    },
}
# The documents describe the default limit; a server configured otherwise answers 413 at its own.
_DEFAULT_MAX_BATCH_EVENTS = Settings.model_fields["max_batch_events"].default
BATCH_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": BATCH_ITEM_SCHEMA,
    "maxItems": _DEFAULT_MAX_BATCH_EVENTS,
}
VALIDATION_FAILED = "Input payload validation failed"

BATCH_DESCRIPTION = f"""
Record up to the server's `max_batch_events` ({_DEFAULT_MAX_BATCH_EVENTS} by default) events in one
transaction: either every event is stored, or none is. A `201` means all of them are committed.

**Body**: a JSON array of events (`Content-Type: application/json`), or NDJSON
(`Content-Type: {NDJSON}`: one event object per line; blank lines are ignored). Each event is
what `POST /api/events/` takes, checked by the same rules.

**201**: `{{"events": [EVENT, ...]}}`, the stored events in input order, each as
`POST /api/events/` returns it. With `?return=minimal`: `{{"count": N, "ids": [ID, ...]}}`, ids in
input order. An empty batch (`[]`, or NDJSON with no event lines) records nothing and answers
`201` with zero events.

**400** when any event is invalid: nothing is written, and every invalid event is reported (not
only the first), in the shape `POST /api/events/` uses for shape errors, each key prefixed with the
event's index (0-based, counting events, not blank lines):

```json
{{"message": "{VALIDATION_FAILED}",
 "errors": {{"0.data": "'data' is a required property",
            "3.email": "Invalid email address.",
            "5": "42 is not of type 'object'",
            "7": "Line 9 is not valid JSON."}},
 "indexes": [0, 3, 5, 7]}}
```

`"<index>.<field>"` names a field: a missing or mistyped field (the shape check) or a broken rule
(the text is the reason `POST /api/events/` gives after "Failed with "). `"<index>"` alone means
the item as a whole is not an event object (or, in NDJSON, not JSON). `indexes` lists the invalid
events in order. A body that is not an array answers with the key `""`
(`{{"errors": {{"": "{{'a': 1}} is not of type 'array'"}}, ...}}`); malformed JSON in an array body
answers `{{"message": "The browser (or proxy) sent a request that this server could not
understand."}}`.

**Idempotent retries**: an item may carry an optional `"{IDEMPOTENCY_KEY_FIELD}"` (1 to {MAX_KEY_LENGTH}
visible ASCII characters). A retried batch then records only the items whose keys are new; an item
whose key was used with the same event returns that first event (same id); with a different event,
the whole batch is refused with `422` and nothing is written.

**413** when the batch holds more than `max_batch_events` events (or the body is over the size
limit): `{{"message": ...}}`, nothing written.
"""

_INVALID_BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}},
        "indexes": {"type": "array", "items": {"type": "integer"}},
    },
}


class ReturnShape(StrEnum):
    representation = "representation"
    minimal = "minimal"


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """An NDJSON line that is not JSON: reported under its index with the other invalid items."""

    line_number: int


@router.post(
    "/api/events/batch",
    status_code=201,
    summary="Record a batch of events",
    description=BATCH_DESCRIPTION,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": BATCH_SCHEMA},
                # Described as the items it carries: one per line, each line a JSON object.
                NDJSON: {"schema": {**BATCH_SCHEMA, "description": "One event object per line"}},
            },
        }
    },
    responses={
        201: {
            "description": "Every event, committed",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["events"],
                                "properties": {"events": {"type": "array", "items": STORED_EVENT_SCHEMA}},
                            },
                            {
                                "type": "object",
                                "required": ["count", "ids"],
                                "properties": {
                                    "count": {"type": "integer"},
                                    "ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                                },
                            },
                        ]
                    }
                }
            },
        },
        400: json_content(
            _INVALID_BATCH_SCHEMA, "Invalid events (all reported), a body not an array, or malformed JSON"
        ),
        413: {**BODY_TOO_LARGE, "description": "Too many events, or a body over the size limit"},
        422: json_content(MESSAGE_SCHEMA, "An item's idempotency_key was used with another event"),
        503: DATABASE_UNAVAILABLE,
    },
)
async def record_event_batch(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    return_shape: Annotated[
        ReturnShape,
        Query(alias="return", description="`minimal`: answer only the count and the ids"),
    ] = ReturnShape.representation,
) -> Response:
    """Record every event of the body in one transaction, or none if any is invalid."""
    limit = settings.max_batch_events
    body = await request.body()
    content_type = content_type_of(request)
    try:
        if content_type == NDJSON:
            items = _ndjson_items(body, limit)
        else:
            items = _json_array_items(body, content_type, limit)
    except BatchTooLarge as error:
        return message_response(str(error), 413)
    events, problems = check_items(
        items, partial(_event_of, limits=settings.event_limits), _item_idempotency_key
    )
    if problems:
        errors = {
            str(problem.index)
            if problem.field is None
            else f"{problem.index}.{problem.field}": problem.reason
            for problem in problems
        }
        indexes = sorted({problem.index for problem in problems})
        return json_response({"message": VALIDATION_FAILED, "errors": errors, "indexes": indexes}, 400)
    # One statement for the whole batch (unnest arrays); measured as fast as COPY into a temp
    # table for 1,000 events, without a temp table's catalog churn on every request.
    results = await record_many(database, events, scope=key_scope(request, settings))
    records = [result.record for result in results]
    if return_shape is ReturnShape.minimal:
        return json_response({"count": len(records), "ids": [str(record["id"]) for record in records]}, 201)
    return json_response(b'{"events":[' + b",".join(event_json(record) for record in records) + b"]}", 201)


def _json_array_items(body: bytes, content_type: str, limit: int) -> list[object]:
    """The array a JSON body holds; a body not declared JSON counts as none, as on POST /api/events/."""
    payload = loads_json(body) if is_json(content_type) else None
    if not isinstance(payload, list):
        raise PayloadShapeError({"": f"{short_repr(payload)} is not of type 'array'"})
    check_batch_size(len(payload), limit)
    return payload


def _ndjson_items(body: bytes, limit: int) -> list[object]:
    """One item per non-blank line; a line that is not JSON becomes an _Undecodable item."""
    lines = [(number, line) for number, line in enumerate(body.split(b"\n"), start=1) if line.strip()]
    check_batch_size(len(lines), limit)  # before decoding anything
    items: list[object] = []
    for number, line in lines:
        try:
            items.append(loads_json(line))
        except MalformedBody:
            items.append(_Undecodable(number))
    return items


def _event_of(item: object, limits: EventLimits) -> NewEvent:
    if isinstance(item, _Undecodable):
        raise PayloadShapeError({"": f"Line {item.line_number} is not valid JSON."})
    return parse_event_payload(item, limits)


def _item_idempotency_key(item: object) -> str | None:
    """An item's own `idempotency_key`, if it has one (an optional sixth field, batches only)."""
    if not isinstance(item, dict) or item.get(IDEMPOTENCY_KEY_FIELD) is None:
        return None
    key = item[IDEMPOTENCY_KEY_FIELD]
    if not isinstance(key, str):
        raise InvalidIdempotencyKey(f"{short_repr(key)} is not of type 'string'")
    return check_idempotency_key(key)
