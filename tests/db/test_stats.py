"""Counts over time: the rollups answer exactly what counting the events answers, DST days included."""

import itertools
import random
import zoneinfo
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from db.engine import Database
from db.filters import FILTER_FIELDS_BY_NAME, EventFilter
from db.stats import (
    ROLLUP_FILTER_FIELDS,
    ROLLUP_INSTANT_FIELDS,
    Bucket,
    Dimension,
    InvalidStatsRequest,
    StatsRequest,
    event_stats,
    events_query,
    rollup_query,
    stats_request,
    time_zone_names,
)
from tests.graphql_schema.support import event_row, seed

# Both 2026 daylight-saving changes of Europe/Berlin (Mar 29, Oct 25) and America/New_York (Mar 8,
# Nov 1) fall inside the generated span; a third of the events crowd around them.
DST_CHANGES = [
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
]
SPAN_START, SPAN_END = datetime(2026, 2, 20, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)
COMPONENTS, ENVIRONMENTS, EMAILS = ("order", "billing", "search"), ("production", "staging"), ("a@x.io", None)


def generated_rows(count: int, seed_value: int = 7) -> list[dict[str, Any]]:
    chooser = random.Random(seed_value)
    rows = []
    for index in range(count):
        if index % 3 == 0:
            moment = chooser.choice(DST_CHANGES) + timedelta(seconds=chooser.uniform(-40 * 3600, 40 * 3600))
        else:
            moment = SPAN_START + (SPAN_END - SPAN_START) * chooser.random()
        rows.append(
            event_row(
                component=chooser.choice(COMPONENTS),
                environment=chooser.choice(ENVIRONMENTS),
                email=chooser.choice(EMAILS),
                message=f"event {index}",
                created_at=moment.replace(microsecond=chooser.randrange(1_000_000)),
            )
        )
    return rows


async def both_ways(database: Database, request: StatsRequest) -> tuple[list[Any], list[Any]]:
    """The rollups' rows (with their `exact` last) and the events' rows, for one request."""
    async with database.single_statement() as connection:
        rollups = await connection.fetch(*_call(rollup_query(request)))
        events = await connection.fetch(*_call(events_query(request)))
    return [tuple(row) for row in rollups], [tuple(row) for row in events]


def _call(query: tuple[str, list[object]]) -> tuple[object, ...]:
    sql, values = query
    return (sql, *values)


async def answer(database: Database, request: StatsRequest) -> Any:
    async with database.single_statement() as connection:
        return await event_stats(connection, request)


FILTERS = [
    EventFilter(),
    EventFilter(component="order"),
    EventFilter(component_in=("order", "search"), environment="production"),
    EventFilter(environment_in=("staging",)),
    EventFilter(
        created_from=datetime(2026, 3, 27, 22, tzinfo=UTC), created_to=datetime(2026, 4, 2, tzinfo=UTC)
    ),
    EventFilter(component="billing", created_from=datetime(2026, 10, 24, tzinfo=UTC)),
]
GROUPINGS = [(), (Dimension.COMPONENT,), (Dimension.ENVIRONMENT, Dimension.COMPONENT)]
BUCKETS = [None, Bucket.HOUR, Bucket.DAY, Bucket.WEEK, Bucket.MONTH]
ZONES = ["UTC", "Europe/Berlin", "America/New_York"]


@pytest.mark.slow  # sweeps generated filters x buckets x zones (the full run's job)
async def test_rollups_answer_exactly_what_counting_the_events_answers(database: Database) -> None:
    await seed(database, generated_rows(3_000))
    checked = 0
    for event_filter, group_by, bucket, zone in itertools.product(FILTERS, GROUPINGS, BUCKETS, ZONES):
        request = StatsRequest(event_filter, group_by, bucket, zone, first=10_000)
        from_rollups, from_events = await both_ways(database, request)
        assert [row[:7] for row in from_rollups] == from_events, request
        assert all(row[7] is True for row in from_rollups), request  # every hour read lies inside one bucket
        assert (await answer(database, request)).source == "rollups"
        checked += bool(from_events)
    assert checked == len(FILTERS) * len(GROUPINGS) * len(BUCKETS) * len(ZONES)


def local_day_starts(moments: list[datetime], zone: str) -> Counter[datetime]:
    """Events per local day, keyed by the day's first instant: zoneinfo's answer, not PostgreSQL's."""
    tz = zoneinfo.ZoneInfo(zone)
    days: Counter[datetime] = Counter()
    for moment in moments:
        local = moment.astimezone(tz)
        days[datetime(local.year, local.month, local.day, tzinfo=tz).astimezone(UTC)] += 1
    return days


@pytest.mark.parametrize(
    ("zone", "short_day", "long_day"),
    [
        ("Europe/Berlin", datetime(2026, 3, 29), datetime(2026, 10, 25)),
        ("America/New_York", datetime(2026, 3, 8), datetime(2026, 11, 1)),
    ],
)
async def test_daily_buckets_follow_the_zones_midnights_across_daylight_saving_changes(
    database: Database, zone: str, short_day: datetime, long_day: datetime
) -> None:
    rows = generated_rows(3_000)
    await seed(database, rows)
    result = await answer(database, StatsRequest(EventFilter(), (), Bucket.DAY, zone, first=500))
    assert result.source == "rollups" and not result.truncated
    expected = local_day_starts([row["created_at"] for row in rows], zone)
    assert {row.bucket: row.count for row in result.rows} == dict(expected)
    starts = [row.bucket for row in result.rows]
    tz = zoneinfo.ZoneInfo(zone)
    lengths = {
        start.astimezone(tz).date(): following - start
        for start, following in itertools.pairwise(starts)
        if following - start < timedelta(days=2)
    }
    assert lengths[short_day.date()] == timedelta(hours=23)
    assert lengths[long_day.date()] == timedelta(hours=25)


async def test_hours_in_a_half_hour_zone_are_counted_from_the_events(database: Database) -> None:
    # Midnight in Asia/Kolkata (+05:30) is 18:30 UTC: the hour 18:00-19:00 UTC spans two days.
    await seed(
        database,
        [
            event_row(created_at=datetime(2026, 5, 1, 18, 15, tzinfo=UTC)),
            event_row(created_at=datetime(2026, 5, 1, 18, 45, tzinfo=UTC)),
        ],
    )
    for bucket in (Bucket.HOUR, Bucket.DAY):
        request = StatsRequest(EventFilter(), (), bucket, "Asia/Kolkata")
        result = await answer(database, request)
        assert result.source == "events"
        assert [row.count for row in result.rows] == [1, 1]
    result = await answer(database, StatsRequest(EventFilter(), (), Bucket.DAY, "Asia/Kolkata"))
    assert [row.bucket for row in result.rows] == [
        datetime(2026, 4, 30, 18, 30, tzinfo=UTC),
        datetime(2026, 5, 1, 18, 30, tzinfo=UTC),
    ]


async def test_an_hour_straddling_a_bucket_boundary_sends_the_count_to_the_events(database: Database) -> None:
    # Berlin kept local mean time (+00:53:28) until 1893: its midnight fell inside a UTC hour then.
    # Today's offset says "whole hours"; the rollup query's own check catches the old hours.
    await seed(
        database,
        [
            event_row(created_at=datetime(1890, 6, 1, 23, 0, tzinfo=UTC)),
            event_row(created_at=datetime(1890, 6, 1, 23, 30, tzinfo=UTC)),
        ],
    )
    request = StatsRequest(EventFilter(), (), Bucket.DAY, "Europe/Berlin")
    from_rollups, _ = await both_ways(database, request)
    assert [row[7] for row in from_rollups] == [False]
    result = await answer(database, request)
    assert result.source == "events"
    assert [row.count for row in result.rows] == [1, 1]


@pytest.mark.parametrize(
    "request_",
    [
        StatsRequest(EventFilter(email="a@x.io"), (), Bucket.DAY),
        StatsRequest(EventFilter(), (Dimension.EMAIL,), None),
        StatsRequest(EventFilter(), (), Bucket.MINUTE),
        StatsRequest(EventFilter(created_from=datetime(2026, 3, 1, 0, 30, tzinfo=UTC)), (), None),
        StatsRequest(EventFilter(message_contains="event 1"), (Dimension.COMPONENT,), Bucket.HOUR),
    ],
    ids=["email filter", "email grouping", "minutes", "from inside an hour", "message"],
)
async def test_what_the_rollups_do_not_hold_is_counted_from_the_events(
    database: Database, request_: StatsRequest
) -> None:
    rows = generated_rows(600)
    await seed(database, rows)
    result = await answer(database, StatsRequest(**{**_fields(request_), "first": 10_000}))
    assert result.source == "events"
    event_filter = request_.event_filter
    expected = [
        row
        for row in rows
        if (event_filter.email is None or row["email"] == event_filter.email)
        and (event_filter.created_from is None or row["created_at"] >= event_filter.created_from)
        and (event_filter.message_contains is None or event_filter.message_contains in row["message"])
    ]
    assert sum(row.count for row in result.rows) == len(expected)


def _fields(request: StatsRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in StatsRequest.__dataclass_fields__}


async def test_rows_are_cut_at_first_and_say_so(database: Database) -> None:
    await seed(database, [event_row(created_at=datetime(2026, 1, day, tzinfo=UTC)) for day in range(1, 8)])
    cut = await answer(database, StatsRequest(EventFilter(), (), Bucket.DAY, first=5))
    assert [row.bucket.day for row in cut.rows] == [1, 2, 3, 4, 5] and cut.truncated
    whole = await answer(database, StatsRequest(EventFilter(), (), Bucket.DAY, first=7))
    assert len(whole.rows) == 7 and not whole.truncated
    none = await answer(database, StatsRequest(EventFilter(component="nothing"), ()))
    assert none.rows == [] and not none.truncated


def test_first_beyond_the_maximum_is_refused_not_clamped() -> None:
    with pytest.raises(InvalidStatsRequest) as refused:
        stats_request(EventFilter(), group_by=None, bucket=None, time_zone=None, first=501, max_rows=500)
    assert refused.value.field == "first"
    with pytest.raises(InvalidStatsRequest):
        stats_request(EventFilter(), group_by=None, bucket=None, time_zone=None, first=-1, max_rows=500)


async def test_an_unknown_time_zone_is_refused(database: Database) -> None:
    for zone in ("Mars/Olympus", "europe/berlin", "+05:30", ""):
        with pytest.raises(InvalidStatsRequest) as refused:
            await answer(database, StatsRequest(EventFilter(), (), Bucket.DAY, zone))
        assert refused.value.field == "time_zone"


async def test_postgresql_and_zoneinfo_agree_on_the_time_zone_names(database: Database) -> None:
    async with database.single_statement() as connection:
        known = set(await time_zone_names(connection))
    # Every name accepted is one Python's zoneinfo knows too (newer tzdata may know a few more).
    assert known <= zoneinfo.available_timezones()
    assert {"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"} <= known


def test_the_rollup_filter_fields_exist_in_the_filter_definition() -> None:
    assert (ROLLUP_FILTER_FIELDS | set(ROLLUP_INSTANT_FIELDS)) <= set(FILTER_FIELDS_BY_NAME)


async def test_a_months_daily_series_of_one_component_reads_only_the_rollups(database: Database) -> None:
    request = StatsRequest(
        EventFilter(
            component="order",
            created_from=datetime(2026, 3, 1, tzinfo=UTC),
            created_to=datetime(2026, 3, 31, tzinfo=UTC),
        ),
        (),
        Bucket.DAY,
        "Europe/Berlin",
    )
    sql, values = rollup_query(request)
    async with database.transaction() as connection:
        await connection.execute("SET LOCAL enable_seqscan = off")  # the empty test table: plan as if big
        plan = "\n".join(row[0] for row in await connection.fetch(f"EXPLAIN {sql}", *values))
    assert "event_counts_hourly" in plan
    assert " on events " not in plan and "ix_events" not in plan
    # By an index on the rollups (which one is the planner's call: the component's, or the key's
    # when earlier tests left rollup rows behind), never by reading the whole table.
    assert "Index" in plan and "Seq Scan" not in plan, plan
