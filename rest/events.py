"""The legacy /api/events routes."""

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import Response, StreamingResponse
from starlette.routing import Route

from db.engine import Database
from db.filters import EventFilter
from db.json_text import json_bytes
from db.repository import get_event, list_events_page, stream_events
from db.validation import parse_event_payload
from db.writes import record_one
from rest.auth import require_event_scope
from rest.bodies import decode_json_body
from rest.dependencies import DatabaseDep, EventWriterDep, SettingsDep, services
from rest.fields_mask import ALL_FIELDS, FieldsMask, apply_fields_mask, parse_fields_mask
from rest.filter_params import EventFilterQuery, event_filter_from_query_params
from rest.idempotency import REPLAYED_HEADERS, IdempotencyKeyHeader, idempotency_key, key_scope
from rest.openapi_schemas import (
    BODY_TOO_LARGE,
    DATABASE_UNAVAILABLE,
    EVENT_ANSWER_SCHEMA,
    EVENT_LIST_SCHEMA,
    EVENT_SCHEMA,
    MESSAGE_SCHEMA,
    SHAPE_ERROR_SCHEMA,
    STORED_EVENT_SCHEMA,
    json_content,
    with_headers,
)
from rest.rendering import event_dict, event_json
from rest.responses import json_response, message_response

router = APIRouter(tags=["events"], dependencies=[Depends(require_event_scope)])

XFieldsHeader = Annotated[
    str | None,
    Header(alias="X-Fields", description="Response mask, e.g. `id,created_at`; a malformed one is a 400"),
]


async def events_mask(x_fields: XFieldsHeader = None) -> FieldsMask | None:
    """The per-event mask from `events{...}`; None for whole events; {} when events are masked out."""
    if not x_fields:
        return None
    mask = parse_fields_mask(x_fields)
    if ALL_FIELDS in mask:
        return None
    if "events" not in mask:
        return {}
    return mask["events"]


@router.post(
    "/api/events/",
    status_code=201,
    openapi_extra={"requestBody": {"required": True, **json_content(EVENT_SCHEMA, "An event")}},
    responses={
        200: with_headers(
            json_content(EVENT_ANSWER_SCHEMA, "A retry: the event its Idempotency-Key recorded"),
            {"Idempotent-Replayed": "`true`"},
        ),
        201: json_content(EVENT_ANSWER_SCHEMA, "The stored event (masked by X-Fields, if sent)"),
        400: json_content(
            SHAPE_ERROR_SCHEMA, "Invalid event, malformed JSON, X-Fields mask or Idempotency-Key"
        ),
        413: BODY_TOO_LARGE,
        422: json_content(MESSAGE_SCHEMA, "Idempotency-Key already used with another event"),
        503: DATABASE_UNAVAILABLE,
    },
)
@router.post("/api/events", status_code=201, include_in_schema=False)
async def record_event(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    writer: EventWriterDep,
    x_fields: XFieldsHeader = None,
    idempotency_key_header: IdempotencyKeyHeader = None,
) -> Response:
    """Record one event; answered once it is committed."""
    mask = parse_fields_mask(x_fields) if x_fields else None
    key = idempotency_key(idempotency_key_header)
    event = parse_event_payload(decode_json_body(await request.body(), request), settings.event_limits)
    result = await record_one(writer, database, event, key=key, scope=key_scope(request, settings))
    status, headers = (200, REPLAYED_HEADERS) if result.replayed else (201, None)
    if mask is not None:
        return json_response(apply_fields_mask(event_dict(result.record), mask), status, headers)
    return json_response(event_json(result.record), status, headers)


@router.get(
    "/api/events/",
    responses={
        200: json_content(EVENT_LIST_SCHEMA, "Matching events, oldest first (masked by X-Fields, if sent)"),
        400: json_content(
            MESSAGE_SCHEMA, "Unparseable from_date, a NUL character in a filter, or a malformed X-Fields mask"
        ),
        503: DATABASE_UNAVAILABLE,
    },
)
@router.get("/api/events", include_in_schema=False)
async def list_events(
    settings: SettingsDep,
    database: DatabaseDep,
    # The mask first: a request wrong in both ways has always been answered about its mask.
    mask: Annotated[FieldsMask | None, Depends(events_mask)],
    event_filter: EventFilterQuery,
) -> Response:
    """Every matching event, oldest first, streamed as rows arrive from the database."""
    if mask == {}:
        return json_response({})  # a masked-out answer, to a request whose filter was checked
    return await _stream_response(database, event_filter, settings.stream_chunk_rows, mask)


def lean_routes() -> list[Route]:
    """GET and POST /api/events/ (and without the slash) as plain Starlette routes, matched first.

    The same steps as `list_events` and `record_event` with their dependencies, called directly:
    FastAPI's dependency solving (the key check, headers, eight query parameters) was about 45% of
    the CPU of a 5-row list (py-spy, 2026-11-30). The FastAPI routes stay for the OpenAPI document,
    and answer nothing these do not (tests/rest/test_lean_routes.py compares them).
    """

    async def lean_list(request: Request) -> Response:
        settings, database, verifier, _writer = services(request)
        await require_event_scope(request, settings, verifier, None, None)
        mask = await events_mask(request.headers.get("x-fields"))
        event_filter = event_filter_from_query_params(request.query_params)
        return await list_events(settings, database, mask, event_filter)

    async def lean_record(request: Request) -> Response:
        settings, database, verifier, writer = services(request)
        await require_event_scope(request, settings, verifier, None, None)
        headers = request.headers
        return await record_event(
            request, settings, database, writer, headers.get("x-fields"), headers.get("idempotency-key")
        )

    routes = []
    for method, endpoint in (("POST", lean_record), ("GET", lean_list)):  # the FastAPI routes' order
        for path in ("/api/events/", "/api/events"):
            route = Route(path, endpoint, methods=[method])
            route.methods = {method}  # not the HEAD Starlette adds to GET: the FastAPI route says 405
            routes.append(route)
    return routes


@router.get(
    "/api/events/{event_id}",
    responses={
        200: json_content(STORED_EVENT_SCHEMA, "The event"),
        400: json_content(MESSAGE_SCHEMA, "Not a UUID"),
        404: json_content(MESSAGE_SCHEMA, "No such event"),
        503: DATABASE_UNAVAILABLE,
    },
)
async def read_event(
    database: DatabaseDep,
    # Documented as a UUID, checked by the route itself (its 400 text is the contract's).
    event_id: Annotated[str, Path(json_schema_extra={"format": "uuid"})],
) -> Response:
    """One event by id."""
    try:
        parsed_id = uuid.UUID(event_id)
    except ValueError:
        return message_response("Invalid event id: it must be a UUID.", 400)
    async with database.replica_read() as connection:
        record = await get_event(connection, parsed_id)
    if record is None:
        return message_response(f"Event {parsed_id} not found.", 404)
    return json_response(event_json(record))


async def _stream_response(
    database: Database, event_filter: EventFilter, chunk_rows: int, mask: FieldsMask | None
) -> Response:
    def render(records: list[Any]) -> bytes:
        if mask is None:
            return b",".join(event_json(record) for record in records)
        return b",".join(json_bytes(apply_fields_mask(event_dict(record), mask)) for record in records)

    # Most lists fit one chunk: then one statement is the whole answer (one round trip, no
    # transaction, no cursor). Only a longer list is streamed, read again from its start.
    async with database.replica_read() as connection:
        rows, longer = await list_events_page(
            connection, event_filter, newest_first=False, after=None, before=None, limit=chunk_rows
        )
    if not longer:
        return Response(b'{"events":[' + render(rows) + b"]}", media_type="application/json")

    # The first chunk is read before the status line goes out, so an unreachable database is a
    # 503, not a 200 followed by a broken body. The transaction stays open while streaming.
    resources = AsyncExitStack()
    try:
        connection = await resources.enter_async_context(database.read_transaction())
        chunks = stream_events(connection, event_filter, chunk_rows=chunk_rows)
        first_chunk = await anext(chunks, [])
    except BaseException:
        await resources.aclose()
        raise

    async def body() -> AsyncIterator[bytes]:
        async with resources:
            yield b'{"events":[' + render(first_chunk)
            async for records in chunks:
                yield b"," + render(records)
            yield b"]}"

    return StreamingResponse(body(), media_type="application/json")
