"""Helpers for the GraphQL tests: run an operation, seed rows with chosen timestamps, count SQL."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from db.engine import Database
from db.json_text import encode_json

# Well before any test runs, so events recorded through the API are always the newest.
T0 = datetime(2020, 1, 1, tzinfo=UTC)


async def graphql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST one operation to /graphql; return the decoded JSON body."""
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()


async def graphql_data(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Like graphql(), asserting there were no errors; returns `data`."""
    body = await graphql(client, query, variables)
    assert "errors" not in body, body
    return body["data"]


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    """The single error of a response."""
    assert len(body.get("errors") or []) == 1, body
    return body["errors"][0]


def event_row(**overrides: Any) -> dict[str, Any]:
    """A row for seed(); every field may be overridden, created_at included."""
    row: dict[str, Any] = {
        "component": "order",
        "environment": "production",
        "email": "ade@example.com",
        "message": "order failed",
        "data": {},
        "created_at": T0,
    }
    row.update(overrides)
    return row


def spaced_rows(count: int, **overrides: Any) -> list[dict[str, Any]]:
    """`count` rows one second apart from T0, messages `event 0`, `event 1`, ..."""
    return [
        event_row(created_at=T0 + timedelta(seconds=index), message=f"event {index}", **overrides)
        for index in range(count)
    ]


async def seed(database: Database, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Insert rows as given (explicit created_at) in one statement; return their ids in order."""
    async with database.transaction() as connection:
        ids = await connection.fetch(
            "INSERT INTO events (component, environment, email, message, data, created_at) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], "
            "$6::timestamptz[]) RETURNING id",
            [row["component"] for row in rows],
            [row["environment"] for row in rows],
            [row["email"] for row in rows],
            [row["message"] for row in rows],
            [encode_json(row["data"]) for row in rows],
            [row["created_at"] for row in rows],
        )
    return [str(record["id"]) for record in ids]


async def event_count(database: Database) -> int:
    async with database.transaction() as connection:
        return await connection.fetchval("SELECT count(*) FROM events")


class CountingPool:
    """Stands in for Database.pool and logs every statement run on the connections it hands out.

    The connections are real; asyncpg's query logger sees each statement as it is sent (and
    reports it from the event loop soon after). Transaction control and asyncpg's own type
    introspection (run once per connection the first time it meets a type, then cached) are kept
    apart from `statements`, the SQL a request costs.
    """

    TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")
    DRIVER_MARKERS = ("typeinfo_tree", "set_config('jit'")

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.statements: list[str] = []
        self.driver_statements: list[str] = []
        self.acquisitions = 0

    def _log(self, record: asyncpg.connection.LoggedQuery) -> None:
        query = record.query.strip()
        if query.upper().startswith(self.TRANSACTION_CONTROL):
            return
        if any(marker in query for marker in self.DRIVER_MARKERS):
            self.driver_statements.append(query)
        else:
            self.statements.append(query)

    async def acquire(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        connection = await self._pool.acquire(*args, **kwargs)
        self.acquisitions += 1
        connection.add_query_logger(self._log)
        return connection

    async def release(self, connection: asyncpg.Connection, *args: Any, **kwargs: Any) -> None:
        connection.remove_query_logger(self._log)
        await self._pool.release(connection, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # The rest of the pool's surface (its size, for the metrics gauges a scrape reads while a
        # test runs) is the real pool's.
        return getattr(self._pool, name)


def new_id() -> str:
    return str(uuid.uuid4())
