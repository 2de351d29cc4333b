"""The partitioned events table: the conversion, partitions ahead, the catch-alls, prune, pruned plans."""

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from alembic import command

from db.engine import Database
from db.filters import EventFilter
from db.migrate import alembic_config, upgrade_to_head
from db.partitions import (
    RUNWAY,
    PartitionInterval,
    event_partitions,
    maintain_partitions,
    next_boundary,
    partition_upkeep,
    period_start,
    periods,
)
from db.repository import get_event, get_events_by_ids, ids_query, page_query, stream_query
from db.retention import prune_events_before

NOW = datetime.now(UTC)
ROWS = (
    "SELECT id, component, environment, email, message, data::text, created_at, tableoid::regclass::text "
    "FROM events ORDER BY id"
)
FROM_EVENTS = (
    "SELECT date_trunc('hour', created_at, 'UTC'), component, environment, count(*), "
    "min(created_at), max(created_at) FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
ROLLUPS = (
    "SELECT hour, component, environment, count, first_at, last_at FROM event_counts_hourly ORDER BY 1, 2, 3"
)
# 12,000 events from January 2026 on, ~37 minutes apart (to early November): every other one with a
# version 4 id (as before migration 0006), the others with version 7 ids made from their created_at;
# JSON data with nesting, arrays, nulls and non-ASCII text; emails sometimes null.
SEED = """
INSERT INTO events (id, component, environment, email, message, data, created_at)
SELECT CASE WHEN n % 2 = 0 THEN gen_random_uuid() ELSE uuid7_at(at) END,
       (ARRAY['order', 'billing', 'search'])[1 + n % 3], (ARRAY['production', 'staging'])[1 + n % 2],
       CASE WHEN n % 5 = 0 THEN NULL ELSE 'user-' || (n % 50) || '@example.com' END,
       'event ' || n || ' ✓',
       jsonb_build_object('n', n, 'nested', jsonb_build_object('list', jsonb_build_array(n, 'é', NULL, true)),
                          'price', n / 7.0),
       at
FROM (SELECT n, timestamptz '2026-01-03 10:00:00.123456+00'
                 + n * interval '37 minutes 13.000017 seconds' AS at
      FROM generate_series(1, 12000) AS n) AS seeded
"""


async def _fetch(url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    connection = await asyncpg.connect(url)
    try:
        return [[tuple(row) for row in await connection.fetch(sql)] for sql in statements]
    finally:
        await connection.close()


def fetch(url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    return asyncio.run(_fetch(url, *statements))


# --- Boundaries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "moment", "start", "following"),
    [
        (
            "month",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            "week",
            datetime(2026, 11, 30, 5, tzinfo=UTC),
            datetime(2026, 11, 30, tzinfo=UTC),
            datetime(2026, 12, 7, tzinfo=UTC),
        ),
        (
            "week",
            datetime(2026, 12, 6, 23, tzinfo=UTC),
            datetime(2026, 11, 30, tzinfo=UTC),
            datetime(2026, 12, 7, tzinfo=UTC),
        ),
        (
            "day",
            datetime(2026, 11, 30, 23, 59, tzinfo=UTC),
            datetime(2026, 11, 30, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
        ),
    ],
)
def test_periods_start_on_utc_midnights_of_their_interval(
    interval: str, moment: datetime, start: datetime, following: datetime
) -> None:
    assert period_start(moment, PartitionInterval(interval)) == start
    assert next_boundary(moment, PartitionInterval(interval)) == following


def test_a_range_is_cut_at_the_boundaries_of_the_interval() -> None:
    start, end = datetime(2026, 11, 15, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    assert periods(start, end, PartitionInterval.MONTH) == [
        (start, datetime(2026, 12, 1, tzinfo=UTC)),
        (datetime(2026, 12, 1, tzinfo=UTC), end),
    ]


# --- The migration ------------------------------------------------------------------------------


@pytest.mark.slow
def test_partitioning_migration_keeps_every_row_and_downgrades(empty_database: str) -> None:
    """0008 on a populated table: every row unchanged, in its month's partition; the rollups too."""
    config = alembic_config(empty_database)
    command.upgrade(config, "0007")
    fetch(empty_database, SEED)
    [before], [rollups_before] = fetch(empty_database, ROWS), fetch(empty_database, ROLLUPS)
    assert len(before) == 12_000 and {row[0].version for row in before} == {4, 7}

    command.upgrade(config, "head")
    [after], [rollups_after] = fetch(empty_database, ROWS), fetch(empty_database, ROLLUPS)
    assert [row[:7] for row in after] == [row[:7] for row in before]
    assert rollups_after == rollups_before
    for row in after:  # each row in the partition of its UTC month
        assert row[7] == f"event_partitions.p{row[6].astimezone(UTC):%Y%m}01", row
    [[(kind,)]], primary_key, indexes, triggers = fetch(
        empty_database,
        "SELECT relkind::text FROM pg_class WHERE oid = 'events'::regclass",
        "SELECT a.attname FROM pg_index AS x JOIN pg_attribute AS a ON a.attrelid = x.indrelid "
        "AND a.attnum = ANY(x.indkey) WHERE x.indrelid = 'events'::regclass AND x.indisprimary ORDER BY 1",
        "SELECT indexname FROM pg_indexes WHERE tablename = 'events' ORDER BY 1",
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'events'::regclass ORDER BY 1",
    )
    assert kind == "p"
    assert primary_key == [("created_at",), ("id",)]
    assert [name for (name,) in indexes] == [
        "ix_events_component_created_at_id",
        "ix_events_component_email_created_at_id",
        "ix_events_created_at_id",
        "ix_events_data_path_ops",
        "ix_events_email_created_at_id",
        "ix_events_environment_created_at_id",
        "ix_events_message_fts",
        "pk_events",
    ]
    assert [name for (name,) in triggers] == [  # 0009's wait first: triggers fire in name order
        "event_clock_wait",
        *(f"event_counts_hourly_{operation}" for operation in ("delete", "insert", "truncate", "update")),
    ]
    # Written by hand after the upgrade: the defaults still make a version 7 id and stamp it now.
    [[(new_id, new_at)]] = fetch(
        empty_database,
        "INSERT INTO events (component, environment, message, data) "
        "VALUES ('order', 'production', 'new', '{}') RETURNING id, created_at",
    )
    assert new_id.version == 7 and abs(new_at - datetime.now(UTC)) < timedelta(minutes=1)
    [[(kept,)]] = fetch(
        empty_database, FROM_EVENTS.replace("SELECT", "SELECT count(*) FROM (SELECT", 1) + ") AS r"
    )
    assert kept == len(fetch(empty_database, ROLLUPS)[0])

    command.downgrade(config, "0007")
    [downgraded] = fetch(empty_database, ROWS)
    assert [row[:7] for row in downgraded if row[0] != new_id] == [row[:7] for row in before]
    assert {row[7] for row in downgraded} == {"events"}
    assert fetch(empty_database, FROM_EVENTS) == fetch(empty_database, ROLLUPS)
    command.upgrade(config, "head")
    [again] = fetch(empty_database, ROWS)
    assert [row[:7] for row in again] == [row[:7] for row in downgraded]
    assert fetch(empty_database, FROM_EVENTS) == fetch(empty_database, ROLLUPS)


# --- Partitions ahead, the catch-alls -------------------------------------------------------------


@pytest.fixture
def migrated_database(empty_database: str) -> str:
    upgrade_to_head(empty_database)
    return empty_database


async def _partitions(url: str) -> list[tuple[str, datetime | None, datetime | None]]:
    connection = await asyncpg.connect(url)
    try:
        return [(p.name, p.lower, p.upper) for p in await event_partitions(connection)]
    finally:
        await connection.close()


async def _maintain(url: str, interval: PartitionInterval, **when: datetime) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        return await maintain_partitions(connection, interval, **when)
    finally:
        await connection.close()


@pytest.mark.slow
async def test_migrate_leaves_partitions_for_the_runway_then_head_and_tail_take_the_rest(
    migrated_database: str,
) -> None:
    layout = await _partitions(migrated_database)
    assert layout[0][0] == "head" and layout[0][1] is None
    assert layout[-1][0] == "tail" and layout[-1][2] is None
    assert layout[-1][1] >= NOW + RUNWAY
    for (_, _, upper), (_, lower, _) in itertools.pairwise(layout):
        assert upper == lower  # contiguous: every instant has exactly one partition
    # Any created_at is stored: the distant past in the head, the distant future in the tail.
    rows = await _fetch(
        migrated_database,
        "INSERT INTO events (component, environment, message, data, created_at) VALUES "
        "('order', 'production', 'old', '{}', '1970-01-01'), "
        "('order', 'production', 'far', '{}', '2999-12-31') "
        "RETURNING tableoid::regclass::text",
    )
    assert rows == [[("event_partitions.head",), ("event_partitions.tail",)]]
    # Nothing to do when the runway is there already.
    assert await _maintain(migrated_database, PartitionInterval.MONTH) == []


@pytest.mark.slow
async def test_a_partition_made_for_rows_the_tail_holds_takes_them_in_the_same_transaction(
    migrated_database: str,
) -> None:
    """The tail's rows move into the partitions carved out of it; rows and rollups stay as they were."""
    tail_start = (await _partitions(migrated_database))[-1][1]
    await _fetch(
        migrated_database,
        "INSERT INTO events (component, environment, message, data, created_at) "
        "SELECT 'order', 'production', 'ahead ' || n, '{}', $1::timestamptz + n * interval '5 hours' "
        "FROM generate_series(0, 299) AS n".replace("$1", f"'{tail_start.isoformat()}'"),
    )
    [before], [rollups_before] = (
        await _fetch(migrated_database, ROWS),
        await _fetch(migrated_database, ROLLUPS),
    )
    assert {row[7] for row in before} == {"event_partitions.tail"}

    # Upkeep as it would run two months on, at daily partitions now: the tail's 62 days of rows move.
    later = tail_start + timedelta(days=40)
    made = await _maintain(migrated_database, PartitionInterval.DAY, now=later)
    assert len(made) == 70  # 40 days + the 30-day runway
    [after], [rollups_after] = await _fetch(migrated_database, ROWS), await _fetch(migrated_database, ROLLUPS)
    assert [row[:7] for row in after] == [row[:7] for row in before]
    assert rollups_after == rollups_before
    for row in after:
        assert row[7] == f"event_partitions.p{row[6].astimezone(UTC):%Y%m%d}", row
    layout = await _partitions(migrated_database)
    assert layout[-1][1] == later + RUNWAY  # a UTC midnight: the runway ends exactly there


# --- Prune ----------------------------------------------------------------------------------------


@pytest.fixture
async def history(migrated_database: str) -> AsyncIterator[tuple[str, Database]]:
    """A database with monthly partitions from January 2026 and the seeded year in them."""
    await _maintain(migrated_database, PartitionInterval.MONTH, since=datetime(2026, 1, 1, tzinfo=UTC))
    await _fetch(migrated_database, SEED)
    database = await Database.connect(migrated_database, min_size=1, max_size=2)
    try:
        yield migrated_database, database
    finally:
        await database.close()


@pytest.mark.slow
async def test_prune_drops_whole_expired_partitions_and_deletes_only_the_rest(
    history: tuple[str, Database],
) -> None:
    url, database = history
    cutoff = datetime(2026, 6, 15, 12, 30, tzinfo=UTC)
    [[(expected,)]] = await _fetch(
        url, f"SELECT count(*) FROM events WHERE created_at < '{cutoff.isoformat()}'"
    )
    assert (await _partitions(url))[1][0] == "p20260101"

    assert await prune_events_before(database, cutoff, batch_size=500) == expected
    [[(oldest,)]] = await _fetch(url, "SELECT min(created_at) FROM events")
    assert oldest >= cutoff
    # January to May went as whole partitions: an empty head now reaches up to June.
    layout = await _partitions(url)
    assert layout[0] == ("head", None, datetime(2026, 6, 1, tzinfo=UTC))
    assert layout[1][0] == "p20260601"
    # DROP fires no trigger: the rollups of the dropped months were removed with them, the rest kept.
    assert await _fetch(url, FROM_EVENTS) == await _fetch(url, ROLLUPS)
    # The head still takes old rows written by hand, and counts them.
    await _fetch(
        url,
        "INSERT INTO events (component, environment, message, data, created_at) "
        "VALUES ('order', 'production', 'old', '{}', '2026-02-01')",
    )
    assert await _fetch(url, FROM_EVENTS) == await _fetch(url, ROLLUPS)


# --- Plans --------------------------------------------------------------------------------------


async def _plan(connection: asyncpg.Connection, sql: str, values: list[object]) -> str:
    return "\n".join(row[0] for row in await connection.fetch(f"EXPLAIN {sql}", *values))


@pytest.mark.slow
async def test_id_lookups_and_date_ranges_read_only_their_partitions_by_index(
    history: tuple[str, Database],
) -> None:
    url, database = history
    connection = await asyncpg.connect(url)
    try:
        for (partition,) in await connection.fetch(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events'::regclass"
        ):  # as autovacuum does: the partitions that received rows
            if await connection.fetchval(f"SELECT EXISTS (SELECT FROM {partition})"):
                await connection.execute(f"ANALYZE {partition}")
        version = (
            "SELECT id FROM events WHERE created_at >= '2026-03-10' AND substr(id::text, 15, 1) = $1 LIMIT 1"
        )
        v7, v4 = await connection.fetchval(version, "7"), await connection.fetchval(version, "4")

        # A version 7 id: only the partition of its millisecond is searched first, by its primary key.
        sql, values = ids_query([v7])
        plan = await _plan(connection, sql, values)
        near, everywhere = plan.split("->  CTE Scan on near", 1)
        assert [line.split(" on ")[1].split()[0] for line in near.splitlines() if " Scan " in line] == [
            "p20260301"
        ], plan
        assert "Index Scan" in near and "Seq Scan" not in plan, plan
        scans = [line for line in everywhere.splitlines() if " on p20" in line or " on head" in line]
        assert len(scans) > 10 and all(("Index Scan" in s or "Bitmap Heap Scan" in s) for s in scans), plan
        assert "One-Time Filter" in everywhere, plan  # the rest of the partitions only when not found near
        # And at run time, with the event found near, no other partition is read at all.
        analyzed = "\n".join(
            row[0] for row in await connection.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", *values)
        )
        _, ran_everywhere = analyzed.split("->  CTE Scan on near", 1)
        assert all("never executed" in line for line in ran_everywhere.splitlines() if " on p2026" in line), (
            analyzed
        )
        # Found there, and the lookup of a version 4 id still finds its event (every partition by index).
        async with database.single_statement() as pooled:
            assert (await get_event(pooled, v7))["id"] == v7
            assert (await get_event(pooled, v4))["id"] == v4
            assert {row["id"] for row in await get_events_by_ids(pooled, [v4, v7, uuid.uuid4()])} == {v4, v7}
        sql, values = ids_query([v4])
        plan = await _plan(connection, sql, values)
        assert "Seq Scan" not in plan and "pk_events_p20260101" in plan and "pk_events_p20261001" in plan, (
            plan
        )

        # from/to: only the partitions of the range, each by index, in order (no sort).
        in_april = EventFilter(
            created_from=datetime(2026, 4, 10, tzinfo=UTC), created_to=datetime(2026, 4, 10, 12, tzinfo=UTC)
        )
        across = EventFilter(
            created_from=datetime(2026, 4, 30, 18, tzinfo=UTC), created_to=datetime(2026, 5, 1, 6, tzinfo=UTC)
        )
        for event_filter, partitions in ((in_april, {"p20260401"}), (across, {"p20260401", "p20260501"})):
            for sql, values in (
                stream_query(event_filter),
                page_query(
                    event_filter, newest_first=True, after=None, before=None, limit=51, scan_descending=True
                ),
            ):
                plan = await _plan(connection, sql, values)
                read = {name for name in ("head", "tail") if f" on {name} " in plan} | {
                    word for word in plan.replace("\n", " ").split() if word.startswith("p2026")
                }
                assert read == partitions, plan
                assert "Seq Scan" not in plan and "Sort" not in plan and "Index" in plan, plan
    finally:
        await connection.close()


# --- Upkeep in the running service ----------------------------------------------------------------


async def test_upkeep_runs_at_once_and_again_and_survives_a_failure(
    database: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rounds: list[PartitionInterval] = []
    fourth = asyncio.Event()

    async def maintain(connection: asyncpg.Connection, interval: PartitionInterval) -> list[str]:
        rounds.append(interval)
        if len(rounds) == 2:
            raise asyncpg.LockNotAvailableError("canceling statement due to lock timeout")
        if len(rounds) == 4:
            fourth.set()
        return []

    monkeypatch.setattr("db.partitions.maintain_partitions", maintain)
    async with partition_upkeep(database, PartitionInterval.WEEK, every_s=0.01):
        assert rounds == [PartitionInterval.WEEK]  # before the block: at start-up
        await asyncio.wait_for(fourth.wait(), timeout=5)  # the rounds go on after the failed second
    assert "could not create the partitions of events ahead" in caplog.text
