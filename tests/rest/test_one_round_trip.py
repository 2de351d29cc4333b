"""A short read is one statement: no BEGIN, no COMMIT, no cursor, for REST lists and GraphQL pages.

Only a list longer than one chunk (STREAM_CHUNK_ROWS) is streamed from a server-side cursor.
"""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from api.settings import Settings
from db.engine import Database
from tests.graphql_schema.support import event_row, seed, spaced_rows
from tests.support import app_sharing_services


class LoggingPool:
    """Stands in for Database.pool: every statement sent on its connections, transaction control too."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.statements: list[str] = []

    def _log(self, record: asyncpg.connection.LoggedQuery) -> None:
        query = record.query.strip()
        if "typeinfo_tree" not in query and "set_config('jit'" not in query:  # asyncpg's own
            self.statements.append(query.split()[0].upper().rstrip(";"))

    def get_max_size(self) -> int:
        return self._pool.get_max_size()

    async def acquire(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        connection = await self._pool.acquire(*args, **kwargs)
        connection.add_query_logger(self._log)
        return connection

    async def release(self, connection: asyncpg.Connection, *args: Any, **kwargs: Any) -> None:
        # Logged through the release too: a reset query sent then is a round trip of the request's.
        # (The pool detaches the proxy it lent, so the logger is removed from the connection itself.)
        raw = connection._con  # type: ignore[attr-defined]
        try:
            await self._pool.release(connection, *args, **kwargs)
        finally:
            raw.remove_query_logger(self._log)


@pytest.fixture
async def logged(app: FastAPI, settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, LoggingPool]]:
    database: Database = app.state.database
    pool = LoggingPool(database.pool)
    logging_database = Database(pool, database.url, database.acquire_timeout_s)  # type: ignore[arg-type]
    small_chunks = app_sharing_services(
        app, settings.model_copy(update={"stream_chunk_rows": 10}), database=logging_database
    )
    transport = httpx.ASGITransport(app=small_chunks)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client, pool


async def test_a_list_that_fits_one_chunk_is_one_select(
    logged: tuple[httpx.AsyncClient, LoggingPool], database: Database
) -> None:
    client, pool = logged
    await seed(database, spaced_rows(5, component="lean"))
    response = await client.get("/api/events/", params={"component": "lean"})
    assert response.status_code == 200 and len(response.json()["events"]) == 5
    assert pool.statements == ["SELECT"]


async def test_a_list_longer_than_a_chunk_is_streamed_whole_and_in_order(
    logged: tuple[httpx.AsyncClient, LoggingPool], database: Database
) -> None:
    client, pool = logged
    ids = await seed(database, spaced_rows(25, component="long"))
    response = await client.get("/api/events/", params={"component": "long"})
    assert [event["id"] for event in response.json()["events"]] == ids
    assert pool.statements[0] == "SELECT" and "BEGIN" in pool.statements  # then the cursor


async def test_one_event_by_id_and_a_graphql_page_are_one_select_each(
    logged: tuple[httpx.AsyncClient, LoggingPool], database: Database
) -> None:
    client, pool = logged
    [event_id] = await seed(database, [event_row()])
    assert (await client.get(f"/api/events/{event_id}")).status_code == 200
    assert pool.statements == ["SELECT"]
    pool.statements.clear()
    body = (await client.post("/graphql", json={"query": "{ events(first: 5) { nodes { id } } }"})).json()
    assert body["data"]["events"]["nodes"] == [{"id": event_id}]
    assert pool.statements == ["SELECT"]
