"""GET /api/events/export: NDJSON and CSV, oldest first, each event with its cursor to resume after."""

import asyncio
import csv
import io
import json
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from api.settings import Settings
from db.engine import Database
from tests.graphql_schema.support import T0, event_row, graphql_data, seed, spaced_rows
from tests.rest.test_streaming import seed as seed_many
from tests.support import app_sharing_services

EXPORT = "/api/events/export"
EVENT_KEYS = ["component", "data", "email", "environment", "message", "id", "created_at"]


def ndjson_lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    body = response.content
    assert body == b"" or body.endswith(b"\n"), "every line, the last too, ends with a newline"
    return [json.loads(line) for line in body.split(b"\n")[:-1]]


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    reader = csv.reader(io.StringIO(response.content.decode("utf-8"), newline=""), strict=True)
    header, *rows = list(reader)
    assert header == [*EVENT_KEYS, "cursor"]
    return [dict(zip(header, row, strict=True)) for row in rows]


def without_cursor(line: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in line.items() if key != "cursor"}


async def test_ndjson_export_is_the_legacy_list_one_event_a_line_each_with_its_cursor(
    client: httpx.AsyncClient, database: Database
) -> None:
    # Inserted newest first: the export's order is (created_at, id), not insertion order.
    await seed(database, list(reversed(spaced_rows(5, data={"k": [1, {"v": None}]}))))
    listed = (await client.get("/api/events/")).json()["events"]
    response = await client.get(EXPORT, params={"format": "ndjson"})
    lines = ndjson_lines(response)
    assert [without_cursor(line) for line in lines] == listed
    assert [line["message"] for line in lines] == [f"event {n}" for n in range(5)]
    assert all(list(line) == [*EVENT_KEYS, "cursor"] for line in lines)
    assert len({line["cursor"] for line in lines}) == 5
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="events-') and disposition.endswith('Z.ndjson"')
    # NDJSON is the default format.
    assert (await client.get(EXPORT)).content == response.content


async def test_csv_export_has_a_header_and_one_row_per_event_in_order(
    client: httpx.AsyncClient, database: Database
) -> None:
    await seed(database, list(reversed(spaced_rows(4, data={"n": 1}))))
    await seed(database, [event_row(email=None, created_at=T0 + timedelta(seconds=9), message="no email")])
    listed = (await client.get("/api/events/")).json()["events"]
    response = await client.get(EXPORT, params={"format": "csv"})
    rows = csv_rows(response)
    assert response.content.startswith(b"component,data,email,environment,message,id,created_at,cursor\r\n")
    assert response.headers["content-disposition"].endswith('Z.csv"')
    assert [row["id"] for row in rows] == [event["id"] for event in listed]
    for row, event in zip(rows, listed, strict=True):
        assert json.loads(row["data"]) == event["data"]
        assert row["email"] == (event["email"] or "")  # a missing email is an empty field
        assert {key: row[key] for key in EVENT_KEYS if key not in ("data", "email")} == {
            key: event[key] for key in EVENT_KEYS if key not in ("data", "email")
        }
    ndjson_cursors = [line["cursor"] for line in ndjson_lines(await client.get(EXPORT))]
    assert [row["cursor"] for row in rows] == ndjson_cursors


async def test_an_export_of_nothing_is_empty_ndjson_and_a_lone_csv_header(client: httpx.AsyncClient) -> None:
    assert ndjson_lines(await client.get(EXPORT, params={"format": "ndjson"})) == []
    response = await client.get(EXPORT, params={"format": "csv"})
    assert csv_rows(response) == []
    assert response.content == b"component,data,email,environment,message,id,created_at,cursor\r\n"


AWKWARD_MESSAGES = [
    'a "quoted" word, and a comma',
    "two\nlines",
    "windows\r\nline end, and a lone\rreturn",
    '"starts and ends with quotes"',
    "  spaces kept  ",
    "unicode: İstanbul straße 😀 \u2028 é",
    "tab\there; semicolon",
]


async def test_awkward_text_survives_both_formats_exactly(
    client: httpx.AsyncClient, database: Database
) -> None:
    rows = [
        event_row(
            message=message,
            component=f"c,{index}",
            data={"text": message, "key, with comma": '"', "nested": {"line": "a\nb"}},
            created_at=T0 + timedelta(seconds=index),
        )
        for index, message in enumerate(AWKWARD_MESSAGES)
    ]
    await seed(database, rows)
    lines = ndjson_lines(await client.get(EXPORT, params={"format": "ndjson"}))
    response = await client.get(EXPORT, params={"format": "csv"})
    exported = csv_rows(response)
    for row, line, table_row in zip(rows, lines, exported, strict=True):
        for got in (line, table_row):
            assert got["message"] == row["message"]
            assert got["component"] == row["component"]
        assert line["data"] == row["data"]
        assert json.loads(table_row["data"]) == row["data"]
    # RFC 4180 quoting, as bytes: the field quoted, its quotes doubled, its line breaks kept.
    assert b'"a ""quoted"" word, and a comma"' in response.content
    assert b'"two\nlines"' in response.content
    assert b'"windows\r\nline end, and a lone\rreturn"' in response.content
    assert "😀".encode() in response.content  # UTF-8, not escaped


async def test_big_integers_in_data_keep_every_digit_in_both_formats(
    client: httpx.AsyncClient, database: Database
) -> None:
    big, negative = 2**70 + 1, -(10**30) - 7
    await seed(database, [event_row(data={"big": big, "negative": negative, "list": [big], "half": 0.5})])
    ndjson = await client.get(EXPORT, params={"format": "ndjson"})
    table = await client.get(EXPORT, params={"format": "csv"})
    for body in (ndjson.content, table.content):
        assert str(big).encode() in body and str(negative).encode() in body
    expected = {"big": big, "negative": negative, "list": [big], "half": 0.5}
    assert ndjson_lines(ndjson)[0]["data"] == expected  # json.loads reads integers exactly
    assert json.loads(csv_rows(table)[0]["data"]) == expected


def tied_rows() -> list[dict[str, Any]]:
    """Nine events, several sharing a created_at: only the id orders those."""
    moments = [0, 0, 0, 1, 1, 2, 3, 3, 3]
    return [
        event_row(created_at=T0 + timedelta(seconds=second), message=f"m{index}", component=f"c{index % 2}")
        for index, second in enumerate(moments)
    ]


@pytest.mark.parametrize("export_format", ["ndjson", "csv"])
async def test_resuming_after_any_line_gives_exactly_the_rest(
    client: httpx.AsyncClient, database: Database, export_format: str
) -> None:
    await seed(database, tied_rows())

    async def export(**params: str) -> list[dict[str, Any]]:
        response = await client.get(EXPORT, params={"format": export_format, **params})
        return ndjson_lines(response) if export_format == "ndjson" else csv_rows(response)

    everything = await export()
    assert len(everything) == 9
    for position, line in enumerate(everything):
        rest = await export(after=line["cursor"])
        assert [event["id"] for event in rest] == [event["id"] for event in everything[position + 1 :]]
    # With a filter, resuming from a line of the filtered export gives the filtered rest.
    filtered = await export(component="c1")
    assert [event["message"] for event in filtered] == ["m1", "m3", "m5", "m7"]
    assert [e["message"] for e in await export(component="c1", after=filtered[1]["cursor"])] == ["m5", "m7"]


async def test_a_graphql_cursor_resumes_an_export_and_an_export_cursor_pages_graphql(
    client: httpx.AsyncClient, database: Database
) -> None:
    await seed(database, tied_rows())
    page = await graphql_data(
        client, "{ events(first: 4, orderBy: OLDEST_FIRST) { edges { cursor node { id } } } }"
    )
    edges = page["events"]["edges"]
    lines = ndjson_lines(await client.get(EXPORT))
    assert [line["cursor"] for line in lines[:4]] == [edge["cursor"] for edge in edges]
    rest = ndjson_lines(await client.get(EXPORT, params={"after": edges[-1]["cursor"]}))
    assert [line["id"] for line in rest] == [line["id"] for line in lines[4:]]
    query = "query($a: String) { events(first: 2, orderBy: OLDEST_FIRST, after: $a) { nodes { id } } }"
    next_page = await graphql_data(client, query, {"a": lines[6]["cursor"]})
    assert [node["id"] for node in next_page["events"]["nodes"]] == [line["id"] for line in lines[7:]]


async def test_an_export_resumed_later_includes_events_recorded_meanwhile(
    client: httpx.AsyncClient, database: Database
) -> None:
    await seed(database, spaced_rows(3))
    first = ndjson_lines(await client.get(EXPORT))
    recorded = (
        await client.post(
            "/api/events/",
            json={
                "component": "late",
                "data": {},
                "email": "a@example.com",
                "environment": "p",
                "message": "m",
            },
        )
    ).json()
    rest = ndjson_lines(await client.get(EXPORT, params={"after": first[-1]["cursor"]}))
    assert [line["id"] for line in rest] == [recorded["id"]]


UNKNOWN = "Unknown export format {!r}: use ndjson or csv."
REFUSED = "Unable to retrieve events - "
NOT_A_CURSOR = REFUSED + "`after` is not a valid cursor."
NUL = REFUSED + "Filter values can not contain NUL characters."


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"format": "xml"}, UNKNOWN.format("xml")),
        ({"format": ""}, UNKNOWN.format("")),
        ({"after": "not-a-cursor"}, NOT_A_CURSOR),
        ({"after": "MjAyMC0wMS0wMXxub3QtYS11dWlk"}, NOT_A_CURSOR),  # base64 of a time and no UUID
        ({"from_date": "13-45-2021"}, REFUSED + "Invalid date specified."),
        ({"to": "yesterday"}, REFUSED + "Invalid date specified."),
        ({"component": "a\x00b"}, NUL),
        ({"emailIn": ["a@x.io", "b\x00"]}, NUL),
        ({"dataContains": "[1, 2]"}, REFUSED + "Must be a JSON object."),
        ({"dataContains": "{not json"}, REFUSED + "Must be a JSON object."),
        # A scalar given twice is refused, not read as its last value (which would skip checking
        # the others): found by the OpenAPI fuzzer.
        ({"from_date": ["13-45-2021", ""]}, REFUSED + "Give `from_date` once, not 2 times."),
        ({"format": ["csv", "ndjson"]}, REFUSED + "Give `format` once, not 2 times."),
    ],
)
async def test_bad_parameters_are_400s_with_a_message(
    client: httpx.AsyncClient, params: dict[str, Any], message: str
) -> None:
    response = await client.get(EXPORT, params=params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": message}


@pytest.mark.parametrize("params", [{"from_date": "13-45-2021"}, {"component": "a\x00b"}])
async def test_a_bad_legacy_filter_is_answered_as_the_list_answers_it(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    listed = await client.get("/api/events/", params=params)
    exported = await client.get(EXPORT, params=params)
    assert (exported.status_code, exported.json()) == (listed.status_code, listed.json())


async def test_list_filters_are_repeated_parameters(client: httpx.AsyncClient, database: Database) -> None:
    await seed(database, [event_row(component=name) for name in ("a", "b", "c")])
    lines = ndjson_lines(await client.get(EXPORT, params={"componentIn": ["a", "c"]}))
    assert sorted(line["component"] for line in lines) == ["a", "c"]


@pytest.mark.parametrize("caller", ["none", "revoked", "read", "write", "admin"])
async def test_an_export_needs_the_read_scope(
    auth_client: httpx.AsyncClient, keys: dict[str, str], caller: str
) -> None:
    headers = {} if caller == "none" else {"Authorization": f"Bearer {keys[caller]}"}
    response = await auth_client.get(EXPORT, params={"format": "csv"}, headers=headers)
    if caller in ("none", "revoked"):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    elif caller == "write":
        assert response.status_code == 403
        assert "events:read" in response.json()["message"]
    else:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"


class _LostConnection:
    """A connection that is lost as the export's cursor is opened."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def cursor(self, *args: Any) -> Any:
        raise ConnectionResetError("connection lost")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class _LosingDatabase(Database):
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with super().transaction() as connection:
            yield _LostConnection(connection)


async def test_a_database_lost_before_the_first_chunk_is_a_503_not_a_broken_200(
    app: FastAPI, settings: Settings, database: Database
) -> None:
    losing = _LosingDatabase(database.pool, database.url, database.acquire_timeout_s)
    failing_app = app_sharing_services(app, settings, database=losing)
    transport = httpx.ASGITransport(app=failing_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get(EXPORT, params={"format": "csv"})
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json() == {"message": "The database is unavailable right now; retry shortly."}


async def test_the_export_route_is_documented_with_both_media_types(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/api/openapi.json")).json()["paths"][EXPORT]["get"]
    assert set(operation["responses"]["200"]["content"]) == {
        "application/x-ndjson",
        "text/csv; charset=utf-8",
    }
    assert {"400", "503"} <= set(operation["responses"])
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"format", "after"} <= names
    email_in = next(parameter for parameter in operation["parameters"] if parameter["name"] == "emailIn")
    assert email_in["schema"]["type"] == "array" and email_in["schema"]["items"]["pattern"]


# --- Memory -------------------------------------------------------------------------------------

LARGE_EXPORT = 20_000


async def _drain(application: FastAPI, query: bytes) -> tuple[int, int, bytes]:
    """GET the export straight through ASGI, counting and dropping the body: (status, bytes, last line).

    httpx's ASGI transport would keep the whole body; this keeps only its size and last line, so the
    memory traced is the server's.
    """
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": EXPORT, "raw_path": EXPORT.encode(), "query_string": query,
        "root_path": "", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }  # fmt: skip
    status, size, tail = 0, 0, b""
    requested = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not requested.is_set():
            requested.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size, tail
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            size += len(body)
            tail = (tail + body)[-4096:]

    await application(scope, receive, send)
    return status, size, tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]


async def _peak_memory(application: FastAPI, query: bytes) -> tuple[int, int, bytes]:
    tracemalloc.start()
    try:
        status, size, last = await _drain(application, query)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 200
    return peak, size, last


@pytest.mark.slow
async def test_a_large_export_streams_in_constant_memory(
    app: FastAPI, settings: Settings, database_url: str
) -> None:
    await seed_many(database_url, LARGE_EXPORT, padding=1_000)  # ~25 MB of NDJSON
    small_chunks = app_sharing_services(app, settings.model_copy(update={"stream_chunk_rows": 500}))
    peak, size, last = await _peak_memory(small_chunks, b"format=ndjson")
    assert size > 20_000_000
    assert json.loads(last)["message"] == f"event {LARGE_EXPORT}"  # complete, in order
    assert peak < 8_000_000, f"peak traced memory {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB export"
    csv_peak, csv_size, csv_last = await _peak_memory(small_chunks, b"format=csv")
    assert csv_size > 20_000_000 and f"event {LARGE_EXPORT}".encode() in csv_last
    assert csv_peak < 8_000_000, (
        f"peak traced memory {csv_peak / 1e6:.1f} MB for a {csv_size / 1e6:.0f} MB CSV"
    )
    # The measure can fail: read as one chunk, the same export holds the whole table at once.
    one_chunk = app_sharing_services(app, settings.model_copy(update={"stream_chunk_rows": LARGE_EXPORT}))
    whole_peak, _size, _last = await _peak_memory(one_chunk, b"format=ndjson")
    assert whole_peak > size / 2, f"one chunk peaked at only {whole_peak / 1e6:.1f} MB: the measure is blind"
