"""Events written straight into the table (explicit created_at and id), and read back from it."""

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def insert_rows(database_url: str, *rows: dict[str, Any]) -> list[str]:
    """Insert events bypassing the API (defaults for fields not given); return their ids as text."""
    connection = await asyncpg.connect(database_url)
    try:
        ids = []
        for row in rows:
            event = {
                "component": "order",
                "environment": "production",
                "email": "ade@example.com",
                "message": "order failed",
                "data": {},
                "created_at": None,
                "id": None,
                **row,
            }
            event_id = await connection.fetchval(
                "INSERT INTO events (id, component, environment, email, message, data, created_at) "
                "VALUES (COALESCE($1, gen_random_uuid()), $2, $3, $4, $5, $6::jsonb, COALESCE($7, now())) "
                "RETURNING id",
                uuid.UUID(event["id"]) if event["id"] else None,
                event["component"],
                event["environment"],
                event["email"],
                event["message"],
                orjson.dumps(event["data"]).decode(),
                event["created_at"],
            )
            ids.append(str(event_id))
        return ids
    finally:
        await connection.close()


async def stored_epoch(database_url: str, event_id: str) -> str:
    """The row's created_at as the database computes its epoch, written like Python's str(float)."""
    connection = await asyncpg.connect(database_url)
    try:
        epoch = await connection.fetchval(
            "SELECT extract(epoch FROM created_at) FROM events WHERE id = $1", uuid.UUID(event_id)
        )
    finally:
        await connection.close()
    return str(float(epoch))


async def count_rows(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval("SELECT count(*) FROM events")
    finally:
        await connection.close()


def epoch_text(moment: datetime) -> str:
    """The contract's created_at for `moment`."""
    return str((moment - EPOCH).total_seconds())
