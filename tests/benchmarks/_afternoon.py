"""The reference a team would write in an afternoon: FastAPI and asyncpg, nothing else.

The same filtered SELECT as `GET /api/events/?component&email` and the same INSERT as
`POST /api/events/`, on the same table, answered as JSON, with no validation beyond FastAPI's types,
no auth, no middleware, no group commit. The suite runs it with 2 uvicorn workers beside the
service (issue 12 asks the service to beat it by 2x). Started as
`uvicorn tests.benchmarks._afternoon:app` with DATABASE_URL set.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from db.repository import EVENT_COLUMNS
from db.urls import as_libpq_url

_state: dict[str, asyncpg.Pool] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    _state["pool"] = await asyncpg.create_pool(
        as_libpq_url(os.environ["DATABASE_URL"]), min_size=2, max_size=10
    )
    try:
        yield
    finally:
        await _state["pool"].close()


app = FastAPI(lifespan=lifespan)


def _event(row: asyncpg.Record) -> dict[str, Any]:
    event = dict(row)
    event["id"] = str(event["id"])
    event["created_at"] = event["created_at"].isoformat()
    event["data"] = orjson.loads(event["data"])
    return event


@app.get("/api/health")
async def health() -> dict[str, str]:
    return {"status": "healthy"}


@app.get("/api/events/")
async def list_events(component: str, email: str) -> Response:
    rows = await _state["pool"].fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE component = $1 AND email = $2 ORDER BY created_at, id",
        component,
        email,
    )
    return Response(orjson.dumps({"events": [_event(row) for row in rows]}), media_type="application/json")


@app.post("/api/events/", status_code=201)
async def record_event(request: Request) -> Response:
    body = orjson.loads(await request.body())
    row = await _state["pool"].fetchrow(
        f"INSERT INTO events (component, environment, email, message, data) "
        f"VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING {EVENT_COLUMNS}",
        body["component"],
        body["environment"],
        body["email"],
        body["message"],
        orjson.dumps(body["data"]).decode(),
    )
    return Response(orjson.dumps(_event(row)), status_code=201, media_type="application/json")
