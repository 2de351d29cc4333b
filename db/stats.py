"""Counts over time: matching events counted per group and time bucket, from rollups when they can answer.

Two ways to the same answer:
- the hourly rollups (`event_counts_hourly`, kept by triggers on `events` in the transaction of
  every write; migration 0007 has them): when the filter, the grouping and the bucket can be answered
  from whole UTC hours per component and environment, a month of one component is ~720 rows;
- the events themselves, an indexed GROUP BY, for everything else (email, message or data filters,
  grouping by email, minute buckets, instants inside an hour).

A bucket is `date_trunc(unit, created_at, time_zone)`: its boundaries are local midnights (hours,
Mondays, first days of months) of the IANA time zone, so a daylight-saving day has 23 or 25 hours.
An hour of the rollups belongs to one bucket only when no bucket boundary falls inside it: true for
every hour of a zone whose offsets are whole hours, false around the boundaries of Asia/Kolkata
(+05:30) or of any zone before it adopted standard time. The rollup query checks that for every hour
it reads and the answer falls back to the events when one straddles a boundary, so the rollups are
only ever used where they are exact.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import asyncpg

from db.filters import EventFilter, SqlParams, check_filter, filter_conditions, set_fields

DEFAULT_STATS_ROWS = 100


class Dimension(StrEnum):
    """What rows can be grouped by (each is a column of `events`)."""

    COMPONENT = "component"
    ENVIRONMENT = "environment"
    EMAIL = "email"


class Bucket(StrEnum):
    """The width of a time bucket (each is a `date_trunc` unit)."""

    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"  # starting on Monday, as ISO 8601 and date_trunc have it
    MONTH = "month"


class InvalidStatsRequest(ValueError):
    """A stats request refused before any counting; `field` is the db name of what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """Which events to count, how to group them, and how many rows to answer at most."""

    event_filter: EventFilter
    group_by: tuple[Dimension, ...] = ()
    bucket: Bucket | None = None
    time_zone: str = "UTC"
    first: int = DEFAULT_STATS_ROWS


@dataclass(frozen=True, slots=True)
class StatsRow:
    """One group: its keys (None when not grouped by it), its bucket's start, its count and span."""

    component: str | None
    environment: str | None
    email: str | None
    bucket: datetime | None
    count: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True, slots=True)
class StatsResult:
    """At most `first` rows in (bucket, component, environment, email) order; `truncated` if more exist."""

    rows: list[StatsRow]
    truncated: bool
    source: str  # "rollups" or "events": which table answered (for tests and logs, not clients)


def stats_request(
    event_filter: EventFilter,
    *,
    group_by: Sequence[Dimension] | None,
    bucket: Bucket | None,
    time_zone: str | None,
    first: int | None,
    max_rows: int,
) -> StatsRequest:
    """A checked request from what a door received (None: the default); InvalidStatsRequest if refused.

    The time zone is checked against the database's list when the request runs (`event_stats`).
    """
    rows = DEFAULT_STATS_ROWS if first is None else first
    if not 0 <= rows <= max_rows:
        raise InvalidStatsRequest("first", f"`first` must be between 0 and {max_rows}, got {rows}.")
    zone = "UTC" if time_zone is None else time_zone
    return StatsRequest(
        event_filter=event_filter,
        group_by=tuple(dict.fromkeys(group_by or ())),  # a repeated dimension groups once
        bucket=bucket,
        time_zone=zone,
        first=rows,
    )


# --- Time zones ---------------------------------------------------------------------------------

# PostgreSQL's own list, read once per process (~600 names): name -> whether its offset is a whole
# number of hours today. That is only a hint for choosing the rollups; the rollup query checks the
# hours it reads itself.
_time_zones: dict[str, bool] | None = None


async def time_zone_names(connection: asyncpg.Connection) -> dict[str, bool]:
    """The IANA time zone names PostgreSQL knows, each with whether its offset is whole hours now."""
    global _time_zones
    if _time_zones is None:
        # A server on the system's tzdata (Debian's) also lists its posix/ and right/ copies of every
        # zone and posixrules: not IANA names, and unknown to a server on its own tzdata (the embedded one).
        rows = await connection.fetch(
            "SELECT name, extract(epoch FROM utc_offset)::integer % 3600 = 0 AS whole "
            "FROM pg_timezone_names WHERE name !~ '^(posix/|right/|posixrules$)'"
        )
        _time_zones = {row["name"]: row["whole"] for row in rows}
    return _time_zones


async def check_time_zone(connection: asyncpg.Connection, name: str) -> bool:
    """Whether `name`'s offset is whole hours now; InvalidStatsRequest when PostgreSQL does not know it."""
    whole = (await time_zone_names(connection)).get(name)
    if whole is None:
        raise InvalidStatsRequest(
            "time_zone", f"Unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'."
        )
    return whole


# --- The two queries ----------------------------------------------------------------------------

_KEYS = ("component", "environment", "email")
# The filter fields the rollups can answer: exact or any-of component and environment (the same
# columns there), and instants on whole hours (compared with the hour). Any other field: the events.
ROLLUP_FILTER_FIELDS = frozenset({"component", "environment", "component_in", "environment_in"})
ROLLUP_INSTANT_FIELDS = {"created_from": ">=", "created_to": "<"}
_ROLLUP_DIMENSIONS = frozenset({Dimension.COMPONENT, Dimension.ENVIRONMENT})
_ROLLUP_BUCKETS = frozenset({Bucket.HOUR, Bucket.DAY, Bucket.WEEK, Bucket.MONTH})


def rollups_can_answer(request: StatsRequest, *, whole_hour_zone: bool) -> bool:
    """Whether the request's filter, grouping and bucket are within what the hourly rollups hold."""
    if not set(request.group_by) <= _ROLLUP_DIMENSIONS:
        return False
    if request.bucket is not None and (request.bucket not in _ROLLUP_BUCKETS or not whole_hour_zone):
        return False
    for spec, value in set_fields(request.event_filter):
        if spec.name in ROLLUP_INSTANT_FIELDS:
            if not _on_the_hour(value):
                return False
        elif spec.name not in ROLLUP_FILTER_FIELDS:
            return False
    return True


def _on_the_hour(moment: datetime) -> bool:
    utc = moment.astimezone(UTC)
    return utc.minute == 0 and utc.second == 0 and utc.microsecond == 0


def events_query(request: StatsRequest) -> tuple[str, list[object]]:
    """The SQL (and its parameters) counting the events themselves; tests EXPLAIN exactly this."""
    params = SqlParams()
    conditions = filter_conditions(request.event_filter, params)
    bucket = _bucket_sql("created_at", request, params)
    keys = _key_columns(request)
    sql = (
        f"SELECT {bucket} AS bucket, {keys}, count(*) AS count, "
        "min(created_at) AS first_at, max(created_at) AS last_at "
        f"FROM events{_where(conditions)}{_group_by(request)} HAVING count(*) > 0 "
        f"ORDER BY 1, 2, 3, 4 LIMIT {params.add(request.first + 1)}"
    )
    return sql, params.values


def rollup_query(request: StatsRequest) -> tuple[str, list[object]]:
    """The SQL (and its parameters) summing the hourly rollups; tests EXPLAIN exactly this.

    Only for a request `rollups_can_answer`. Its `exact` column is false when some hour read
    straddles a bucket boundary (its events may belong to two buckets): then the events must answer.
    """
    check_filter(request.event_filter)
    params = SqlParams()
    conditions: list[str] = []
    for spec, value in set_fields(request.event_filter):
        operator = ROLLUP_INSTANT_FIELDS.get(spec.name)
        if operator is not None:
            conditions.append(f"hour {operator} {params.add(value)}")
        else:  # component and environment: the same columns, compared the same way
            conditions.append(spec.condition.sql(params.add(spec.condition.sql_value(value))))
    bucket = _bucket_sql("hour", request, params)
    if request.bucket is None:
        exact = "true"
    else:
        last_instant = _bucket_sql("hour + interval '1 hour' - interval '1 microsecond'", request, params)
        exact = f"bool_and(bool_and({bucket} = {last_instant})) OVER ()"
    sql = (
        f"SELECT {bucket} AS bucket, {_key_columns(request)}, sum(count)::bigint AS count, "
        f"min(first_at) AS first_at, max(last_at) AS last_at, {exact} AS exact "
        f"FROM event_counts_hourly{_where(conditions)}{_group_by(request)} HAVING count(*) > 0 "
        f"ORDER BY 1, 2, 3, 4 LIMIT {params.add(request.first + 1)}"
    )
    return sql, params.values


async def event_stats(connection: asyncpg.Connection, request: StatsRequest) -> StatsResult:
    """Matching events counted per group and bucket: from the rollups when they hold the answer."""
    whole_hour_zone = await check_time_zone(connection, request.time_zone)
    if rollups_can_answer(request, whole_hour_zone=whole_hour_zone):
        sql, values = rollup_query(request)
        records = await connection.fetch(sql, *values)
        if all(record["exact"] for record in records):
            return _result(records, request, "rollups")
    sql, values = events_query(request)
    return _result(await connection.fetch(sql, *values), request, "events")


def _result(records: list[asyncpg.Record], request: StatsRequest, source: str) -> StatsResult:
    rows = [
        StatsRow(
            component=record["component"],
            environment=record["environment"],
            email=record["email"],
            bucket=record["bucket"],
            count=record["count"],
            first_at=record["first_at"],
            last_at=record["last_at"],
        )
        for record in records[: request.first]
    ]
    return StatsResult(rows=rows, truncated=len(records) > request.first, source=source)


def _bucket_sql(column: str, request: StatsRequest, params: SqlParams) -> str:
    if request.bucket is None:
        return "NULL::timestamptz"
    unit, zone = params.add(request.bucket.value), params.add(request.time_zone)
    return f"date_trunc({unit}::text, {column}, {zone}::text)"


def _key_columns(request: StatsRequest) -> str:
    grouped = {dimension.value for dimension in request.group_by}
    return ", ".join(key if key in grouped else f"NULL::text AS {key}" for key in _KEYS)


def _group_by(request: StatsRequest) -> str:
    # Output positions: 1 is the bucket, 2-4 the keys (component, environment, email).
    positions = [str(_KEYS.index(dimension.value) + 2) for dimension in request.group_by]
    if request.bucket is not None:
        positions.insert(0, "1")
    return f" GROUP BY {', '.join(sorted(positions))}" if positions else ""


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""
