"""GET /api/events/export: every matching event, streamed as NDJSON or CSV, resumable by cursor.

Every line (NDJSON) or row (CSV) carries the cursor of its own event, so a client whose connection
breaks resumes with `after=<the cursor of the last complete line it received>`: no end-of-export
record is needed to know where to continue, and nothing is lost or repeated. A trailer or a last
"next cursor" record would be lost exactly when it is needed, with the connection.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse

from db.cursors import cursor_bytes, decode_cursor
from db.engine import Database
from db.filters import EventFilter
from db.repository import EventKey, stream_events
from rest.auth import require_event_scope
from rest.dependencies import DatabaseDep, SettingsDep
from rest.filter_params import ExportFilterQuery
from rest.openapi_schemas import DATABASE_UNAVAILABLE, MESSAGE_SCHEMA, json_content, with_headers
from rest.rendering import created_at_text, event_json
from rest.responses import message_response

router = APIRouter(tags=["events"], dependencies=[Depends(require_event_scope)])

EXPORT_PATH = "/api/events/export"
# The legacy event's keys, in the contract's order, then the event's cursor.
CSV_COLUMNS = ("component", "data", "email", "environment", "message", "id", "created_at", "cursor")


def _cursor(record: Any) -> bytes:
    return cursor_bytes(record["created_at"], record["id"])


def _ndjson(records: Sequence[Any]) -> bytes:
    # The legacy rendering with the cursor added as a last key, in one join a line.
    return b"".join([event_json(record, b'","cursor":"' + _cursor(record) + b'"}\n') for record in records])


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _csv(records: Sequence[Any]) -> bytes:
    # RFC 4180: CRLF line ends, quotes doubled inside quoted fields. Every text field is quoted (the
    # RFC allows it for any field), which spares a scan for commas, quotes and line breaks in each:
    # this way costs about half the CPU of the `csv` module's writer, the bulk of an export's time.
    # The id, created_at and cursor never need quotes. `data` is the JSON text PostgreSQL renders
    # (every digit kept); a missing email is an empty field, not "".
    return "".join(
        [
            f"{_quoted(record['component'])},{_quoted(record['data'])},"
            f"{'' if record['email'] is None else _quoted(record['email'])},"
            f"{_quoted(record['environment'])},{_quoted(record['message'])},{record['id']},"
            f"{created_at_text(record)},{_cursor(record).decode()}\r\n"
            for record in records
        ]
    ).encode()


@dataclass(frozen=True, slots=True)
class ExportFormat:
    """How one format writes events: its media type, file extension, first bytes and rows."""

    media_type: str
    extension: str
    head: bytes
    render: Callable[[Sequence[Any]], bytes]


FORMATS: dict[str, ExportFormat] = {
    "ndjson": ExportFormat("application/x-ndjson", "ndjson", b"", _ndjson),
    "csv": ExportFormat("text/csv; charset=utf-8", "csv", ",".join(CSV_COLUMNS).encode() + b"\r\n", _csv),
}

_NDJSON_EXAMPLE = (
    '{"component":"order","data":{"age": 20},"email":"ade@example.com","environment":"production",'
    '"message":"order failed","id":"a785b2db-6566-4316-a435-58f8e5c6ae98","created_at":"1795841501.348148",'
    '"cursor":"MjAyNi0xMS0yOVQxMDo1MTo0MS4zNDgxNDgrMDA6MDB8YTc4NWIyZGItNjU2Ni00MzE2LWE0MzUtNThmOGU1YzZhZTk4"}\n'
)
_EXPORTED = with_headers(
    {
        "description": (
            "Matching events, oldest first, streamed; each line (NDJSON) or row (CSV) ends with the "
            "event's `cursor`, to resume after it"
        ),
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "One JSON event a line, as GET /api/events/"},
                "example": _NDJSON_EXAMPLE,
            },
            "text/csv; charset=utf-8": {
                "schema": {"type": "string", "description": "RFC 4180, a header row, `data` as JSON text"},
                "example": ",".join(CSV_COLUMNS) + "\r\n",
            },
        },
    },
    {"Content-Disposition": '`attachment; filename="events-<UTC time>.<ndjson|csv>"`'},
)


@router.get(
    EXPORT_PATH,
    response_class=StreamingResponse,
    responses={
        200: _EXPORTED,
        400: json_content(
            MESSAGE_SCHEMA, "Unknown format, an invalid cursor, or a filter value the list would refuse"
        ),
        503: DATABASE_UNAVAILABLE,
    },
)
async def export_events(
    settings: SettingsDep,
    database: DatabaseDep,
    event_filter: ExportFilterQuery,
    export_format: Annotated[
        str, Query(alias="format", description="`ndjson` or `csv`", json_schema_extra={"enum": list(FORMATS)})
    ] = "ndjson",
    after: Annotated[
        str | None,
        Query(description="Start strictly after the event of this cursor (a line's `cursor`, or GraphQL's)"),
    ] = None,
) -> Response:
    """Every matching event, oldest first, as NDJSON or CSV, each with its cursor to resume after."""
    chosen = FORMATS.get(export_format)
    if chosen is None:
        return message_response(f"Unknown export format {export_format!r}: use ndjson or csv.", 400)
    start = decode_cursor(after, "after") if after else None
    return await _stream(database, event_filter, start, settings.stream_chunk_rows, chosen)


async def _stream(
    database: Database, event_filter: EventFilter, after: EventKey | None, chunk_rows: int, form: ExportFormat
) -> Response:
    # The first chunk is read before the status line goes out: an unreachable database is a 503,
    # not a 200 with a broken body. The transaction (one snapshot) stays open while streaming.
    resources = AsyncExitStack()
    try:
        connection = await resources.enter_async_context(database.read_transaction())
        chunks = stream_events(connection, event_filter, chunk_rows=chunk_rows, after=after)
        first_chunk = await anext(chunks, [])
    except BaseException as error:
        # The error goes through the transaction's exit, which turns a lost connection into
        # DatabaseUnavailable (a 503); a bare aclose() would let the raw driver error out (a 500).
        await resources.__aexit__(type(error), error, error.__traceback__)
        raise

    async def body() -> AsyncIterator[bytes]:
        async with resources:
            records: list[Any] | None = first_chunk
            prefix = form.head
            while records is not None:
                # The next chunk is asked for before this one is written: PostgreSQL reads it
                # while Python renders, instead of each waiting for the other.
                upcoming = asyncio.ensure_future(anext(chunks, None)) if records else None
                try:
                    yield prefix + form.render(records)
                    prefix = b""
                    records = await upcoming if upcoming is not None else None
                finally:
                    if upcoming is not None and not upcoming.done():  # the client left mid-read
                        upcoming.cancel()
                        with suppress(asyncio.CancelledError):
                            await upcoming

    filename = f"events-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{form.extension}"
    return StreamingResponse(
        body(),
        media_type=form.media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
