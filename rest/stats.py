"""GET /api/events/stats: counts over time (db.stats) with the list's filters."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.settings import Settings
from db.stats import DEFAULT_STATS_ROWS, Bucket, Dimension, InvalidStatsRequest, event_stats, stats_request
from rest.auth import require_event_scope
from rest.dependencies import DatabaseDep, SettingsDep
from rest.filter_params import REST_REPEATABLE, EventFilterQuery, refuse_repeated
from rest.openapi_schemas import DATABASE_UNAVAILABLE, SHAPE_ERROR_SCHEMA, json_content
from rest.responses import json_response, message_response

# Repeatable: the list-valued filters, and `group_by`; any other parameter is given once.
_REPEATABLE = REST_REPEATABLE | {"group_by"}


async def _each_scalar_once(request: Request) -> None:
    refuse_repeated(request.query_params, _REPEATABLE)


router = APIRouter(tags=["events"], dependencies=[Depends(require_event_scope), Depends(_each_scalar_once)])

_INSTANT = {"type": "string", "format": "date-time"}
STATS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["rows", "truncated"],
    "properties": {
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "component",
                    "environment",
                    "email",
                    "bucket",
                    "count",
                    "first_created_at",
                    "last_created_at",
                ],
                "properties": {
                    "component": {"type": ["string", "null"], "description": "Null unless grouped by it"},
                    "environment": {"type": ["string", "null"], "description": "Null unless grouped by it"},
                    "email": {"type": ["string", "null"], "description": "Null unless grouped by it"},
                    "bucket": {**_INSTANT, "type": ["string", "null"], "description": "Bucket start (UTC)"},
                    "count": {"type": "integer", "minimum": 1},
                    "first_created_at": _INSTANT,
                    "last_created_at": _INSTANT,
                },
            },
        },
        "truncated": {"type": "boolean", "description": "More rows matched than `first` allowed"},
    },
}


# The document describes the default limit; a server configured otherwise answers 400 at its own.
_DEFAULT_MAX_ROWS = Settings.model_fields["max_page_size"].default


@router.get(
    "/api/events/stats",
    responses={
        200: json_content(STATS_SCHEMA, "Rows ordered by bucket, then component, environment and email"),
        400: json_content(
            SHAPE_ERROR_SCHEMA,
            "An unknown time zone, `first` out of range, an unknown dimension or bucket, or a bad filter",
        ),
        503: DATABASE_UNAVAILABLE,
    },
)
async def get_event_stats(
    settings: SettingsDep,
    database: DatabaseDep,
    event_filter: EventFilterQuery,
    group_by: Annotated[
        list[Dimension] | None, Query(description="Group by this dimension; repeat for several.")
    ] = None,
    bucket: Annotated[
        Bucket | None,
        Query(description="Count per bucket of this width, in `time_zone` (a week starts on Monday)."),
    ] = None,
    time_zone: Annotated[
        str, Query(description="IANA time zone of the bucket boundaries, e.g. `Europe/Berlin`.")
    ] = "UTC",
    first: Annotated[
        int,
        Query(
            description=(
                f"Most rows to answer, 0 to the server's maximum page size ({_DEFAULT_MAX_ROWS} by default)."
            ),
            # Documented, not validated here: the route answers its own 400 text, at the server's limit.
            json_schema_extra={"minimum": 0, "maximum": _DEFAULT_MAX_ROWS},
        ),
    ] = DEFAULT_STATS_ROWS,
) -> Response:
    """Matching events counted per group and time bucket."""
    try:
        request = stats_request(
            event_filter,
            group_by=group_by,
            bucket=bucket,
            time_zone=time_zone,
            first=first,
            max_rows=settings.max_page_size,
        )
        async with database.replica_read() as connection:
            result = await event_stats(connection, request)
    except InvalidStatsRequest as error:
        return message_response(error.reason, 400)
    rows = [
        {
            "component": row.component,
            "environment": row.environment,
            "email": row.email,
            "bucket": row.bucket.isoformat() if row.bucket is not None else None,
            "count": row.count,
            "first_created_at": row.first_at.isoformat(),
            "last_created_at": row.last_at.isoformat(),
        }
        for row in result.rows
    ]
    return json_response({"rows": rows, "truncated": result.truncated})
