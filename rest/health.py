"""Liveness and readiness routes."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from db.engine import DatabaseUnavailable
from rest.dependencies import DatabaseDep
from rest.openapi_schemas import json_content, with_headers
from rest.responses import json_response

router = APIRouter(tags=["health"])

# Byte for byte what the original answered (json.dumps spacing).
HEALTHY = b'{"status": "healthy"}'


def _status(value: str, *, message: bool = False) -> dict[str, Any]:
    """The schema of `{"status": value}` (and a `message` string)."""
    properties: dict[str, Any] = {"status": {"const": value}}
    if message:
        properties["message"] = {"type": "string"}
    return {"type": "object", "required": list(properties), "properties": properties}


# HEAD is its own, undocumented route: one route for both methods gives the two OpenAPI
# operations the same operationId, which OpenAPI forbids.
@router.get("/api/health", responses={200: json_content(_status("healthy"), "The process is serving")})
@router.head("/api/health", include_in_schema=False)
@router.api_route("/api/healthz", methods=["GET", "HEAD"], include_in_schema=False)
async def health() -> Response:
    """Liveness: the process is up and serving (does not touch the database)."""
    return json_response(HEALTHY)


@router.get(
    "/api/ready",
    responses={
        200: json_content(_status("ready"), "The database answers"),
        503: with_headers(
            json_content(_status("unavailable", message=True), "The database does not answer"),
            {"Retry-After": "Seconds to wait before retrying"},
        ),
    },
)
@router.head("/api/ready", include_in_schema=False)
async def ready(database: DatabaseDep) -> Response:
    """Readiness: 200 when the database answers, 503 when it does not."""
    try:
        async with database.transaction() as connection:
            await connection.fetchval("SELECT 1")
    except DatabaseUnavailable:
        return json_response(
            {"status": "unavailable", "message": "The database does not answer."},
            503,
            {"Retry-After": "2"},
        )
    return json_response({"status": "ready"})
