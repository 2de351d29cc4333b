"""`Query.eventStats`: counts over time, its enums and result types, translated to and from db.stats."""

from datetime import datetime
from enum import Enum

import strawberry

from db import filters, stats
from graphql_schema.context import Context
from graphql_schema.errors import BadUserInput

# The GraphQL names of db.stats' fields, for error messages and `extensions.field`.
_ARGUMENT_NAMES = {"first": "first", "time_zone": "timeZone", "group_by": "groupBy"}

# The enums are projections of db.stats' own (same members), so the doors cannot drift from it.
EventDimension = strawberry.enum(
    Enum("EventDimension", {member.name: member.value for member in stats.Dimension}),  # type: ignore[misc]
    description="What event counts can be grouped by.",
)
TimeBucket = strawberry.enum(
    Enum("TimeBucket", {member.name: member.value for member in stats.Bucket}),  # type: ignore[misc]
    description=(
        "The width of a time bucket, its boundaries in the requested time zone: a daylight-saving "
        "day has 23 or 25 hours; a WEEK starts on Monday."
    ),
)

EVENT_STATS_DESCRIPTION = (
    "Matching events counted per group and time bucket (only groups with events appear). Rows are "
    "ordered by bucket, then component, environment and email; `first` (default "
    f"{stats.DEFAULT_STATS_ROWS}, at most the server's maximum page size) bounds them, more is an "
    "error, never a silent clamp, and `truncated` says whether rows were left out. `timeZone` is an "
    "IANA name (e.g. `Europe/Berlin`) placing the bucket boundaries; bucket starts are instants (UTC)."
)


@strawberry.type(description="One group of events: its keys (null when not grouped by), bucket and count.")
class EventStatsRow:
    component: str | None = strawberry.field(description="The component, when grouped by COMPONENT.")
    environment: str | None = strawberry.field(description="The environment, when grouped by ENVIRONMENT.")
    email: str | None = strawberry.field(
        description="The email, when grouped by EMAIL (also null for events without one)."
    )
    bucket: datetime | None = strawberry.field(
        description="The start of the bucket, as an instant; null without `bucket`."
    )
    count: int = strawberry.field(description="How many events the group holds.")
    first_created_at: datetime = strawberry.field(description="The `createdAt` of its oldest event.")
    last_created_at: datetime = strawberry.field(description="The `createdAt` of its newest event.")


@strawberry.type(description="The rows of `eventStats` and whether there were more.")
class EventStatsResult:
    rows: list[EventStatsRow] = strawberry.field(description="At most `first` rows, in order.")
    truncated: bool = strawberry.field(description="True when more rows matched than `first` allowed.")


async def event_stats(
    context: Context,
    event_filter: filters.EventFilter,
    group_by: list[Enum] | None,
    bucket: Enum | None,
    time_zone: str | None,
    first: int | None,
) -> EventStatsResult:
    """`Query.eventStats` itself: the request checked, counted by db.stats, rendered."""
    try:
        request = stats.stats_request(
            event_filter,
            group_by=[stats.Dimension(dimension.value) for dimension in group_by or ()],
            bucket=stats.Bucket(bucket.value) if bucket is not None else None,
            time_zone=time_zone,
            first=first,
            max_rows=context.settings.max_page_size,
        )
        async with context.database.replica_read() as connection:
            result = await stats.event_stats(connection, request)
    except stats.InvalidStatsRequest as error:
        raise BadUserInput(error.reason, field=_ARGUMENT_NAMES.get(error.field, error.field)) from None
    return EventStatsResult(
        rows=[
            EventStatsRow(
                component=row.component,
                environment=row.environment,
                email=row.email,
                bucket=row.bucket,
                count=row.count,
                first_created_at=row.first_at,
                last_created_at=row.last_at,
            )
            for row in result.rows
        ],
        truncated=result.truncated,
    )
