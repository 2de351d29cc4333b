"""The legacy /api/events routes."""

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from db.filters import EventFilter
from db.repository import get_event, stream_events
from db.validation import EVENT_FIELDS, parse_event_payload
from rest.auth import require_event_scope
from rest.errors import MalformedBody
from rest.fields_mask import ALL_FIELDS, FieldsMask, apply_fields_mask, parse_fields_mask
from rest.from_date import InvalidFromDate, parse_from_date
from rest.rendering import event_dict, event_json
from rest.responses import database, json_response, message_response

router = APIRouter(tags=["events"], dependencies=[Depends(require_event_scope)])

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(EVENT_FIELDS),
    "properties": {
        "component": {"type": "string", "example": "order"},
        "data": {"type": "object", "example": {"age": 20}},
        "email": {"type": "string", "example": "ade@example.com"},
        "environment": {"type": "string", "example": "production"},
        "message": {"type": "string", "example": "order failed"},
    },
}
_STORED_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_EVENT_SCHEMA["properties"],
        "id": {"type": "string", "format": "uuid"},
        "created_at": {"type": "string", "example": "1795841501.40572"},
    },
}
_MESSAGE_SCHEMA = {"type": "object", "properties": {"message": {"type": "string"}}}


def _json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


XFieldsHeader = Annotated[
    str | None,
    Header(alias="X-Fields", description="Response mask, e.g. `id,created_at`"),
]


@router.post(
    "/api/events/",
    status_code=201,
    openapi_extra={"requestBody": {"required": True, **_json_content(_EVENT_SCHEMA, "An event")}},
    responses={
        201: _json_content(_STORED_EVENT_SCHEMA, "The stored event"),
        400: _json_content(_MESSAGE_SCHEMA, "Invalid event"),
    },
)
@router.post("/api/events", status_code=201, include_in_schema=False)
async def record_event(request: Request, x_fields: XFieldsHeader = None) -> Response:
    """Record one event; answered once it is committed."""
    mask = parse_fields_mask(x_fields) if x_fields else None
    event = parse_event_payload(_decode_json_body(await request.body(), request))
    # Concurrent writes share a commit (db.group_commit); answered once this event's is done.
    record = await request.app.state.event_writer.record(event)
    if mask is not None:
        return json_response(apply_fields_mask(event_dict(record), mask), 201)
    return json_response(event_json(record), 201)


@router.get(
    "/api/events/",
    responses={
        200: _json_content(
            {"type": "object", "properties": {"events": {"type": "array", "items": _STORED_EVENT_SCHEMA}}},
            "Matching events, oldest first",
        ),
        400: _json_content(_MESSAGE_SCHEMA, "Unparseable from_date"),
    },
)
@router.get("/api/events", include_in_schema=False)
async def list_events(
    request: Request,
    email: Annotated[str | None, Query(description="Exact email")] = None,
    environment: Annotated[str | None, Query(description="Exact environment")] = None,
    component: Annotated[str | None, Query(description="Exact component")] = None,
    message: Annotated[str | None, Query(description="Case-sensitive substring")] = None,
    from_date: Annotated[
        str | None, Query(description="MM-DD-YYYY or ISO 8601; events at or after it (UTC)")
    ] = None,
    x_fields: XFieldsHeader = None,
) -> Response:
    """Every matching event, oldest first, streamed as rows arrive from the database."""
    mask = _events_mask(x_fields)
    try:
        created_from = parse_from_date(from_date) if from_date else None
    except InvalidFromDate as error:
        return message_response(str(error), 400)
    # An empty parameter filters nothing, as in the original (`?email=` is not "email = ''").
    event_filter = EventFilter(
        email=email or None,
        environment=environment or None,
        component=component or None,
        message_substring=message or None,
        created_from=created_from,
    )
    if mask == {}:
        return json_response({})
    settings = request.app.state.settings
    return await _stream_response(request, event_filter, settings.stream_chunk_rows, mask)


@router.get(
    "/api/events/{event_id}",
    responses={
        200: _json_content(_STORED_EVENT_SCHEMA, "The event"),
        400: _json_content(_MESSAGE_SCHEMA, "Not a UUID"),
        404: _json_content(_MESSAGE_SCHEMA, "No such event"),
    },
)
async def read_event(request: Request, event_id: Annotated[str, Path()]) -> Response:
    """One event by id."""
    try:
        parsed_id = uuid.UUID(event_id)
    except ValueError:
        return message_response("Invalid event id: it must be a UUID.", 400)
    async with database(request).transaction() as connection:
        record = await get_event(connection, parsed_id)
    if record is None:
        return message_response(f"Event {parsed_id} not found.", 404)
    return json_response(event_json(record))


def _decode_json_body(body: bytes, request: Request) -> object:
    """The body as Flask's `request.json` saw it: None unless it is declared JSON.

    Declared JSON but empty is malformed JSON, as it was for Flask (json.loads of nothing fails).
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json" or content_type.endswith("+json")
    if not is_json:
        return None
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8, bad syntax and NaN/Infinity; RecursionError absurd nesting.
        raise MalformedBody() from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _events_mask(x_fields: str | None) -> FieldsMask | None:
    """The per-event mask from `events{...}`; None for whole events; {} when events are masked out."""
    if not x_fields:
        return None
    mask = parse_fields_mask(x_fields)
    if ALL_FIELDS in mask:
        return None
    if "events" not in mask:
        return {}
    return mask["events"]


async def _stream_response(
    request: Request, event_filter: EventFilter, chunk_rows: int, mask: FieldsMask | None
) -> Response:
    # The first chunk is read before the status line goes out, so an unreachable database is a
    # 503, not a 200 followed by a broken body. The transaction stays open while streaming.
    resources = AsyncExitStack()
    try:
        connection = await resources.enter_async_context(database(request).transaction())
        chunks = stream_events(connection, event_filter, chunk_rows=chunk_rows)
        first_chunk = await anext(chunks, [])
    except BaseException:
        await resources.aclose()
        raise

    def render(records: list[Any]) -> bytes:
        if mask is None:
            return b",".join(event_json(record) for record in records)
        return b",".join(orjson.dumps(apply_fields_mask(event_dict(record), mask)) for record in records)

    async def body() -> AsyncIterator[bytes]:
        async with resources:
            yield b'{"events":[' + render(first_chunk)
            async for records in chunks:
                yield b"," + render(records)
            yield b"]}"

    return StreamingResponse(body(), media_type="application/json")
