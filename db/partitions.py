"""The partitions of `events`: range partitions on created_at, made ahead of time, dropped when expired.

Layout (migration 0008 builds it; everything here keeps it), in the schema `event_partitions`:

    head  [MINVALUE, first)   everything older than the first regular partition
    p...  [start, end)        one per EVENT_PARTITION_INTERVAL (UTC months, ISO weeks or days)
    tail  [last end, MAXVALUE) everything newer than the last regular partition

So every created_at has exactly one partition and no insert can fail for want of one, whatever a
hand-written row says. Why two bounded catch-alls rather than one DEFAULT partition: PostgreSQL reads
range partitions in order only when no DEFAULT partition is in the plan (`partitions_are_ordered`),
and the unfiltered newest-first page (no created_at bound, so nothing prunes a DEFAULT) then became a
Merge Append that opens an index scan on every partition; with head and tail it stays an ordered
Append that reads the newest partition and stops.

Ahead of time: the tail is kept empty in practice by carving regular partitions out of it up to
RUNWAY past now, at `migrate`, at start-up and every UPKEEP_INTERVAL_S in the running service. A
carve detaches the tail, creates the new partitions, moves into them whatever rows the tail holds in
their ranges (rows written by hand, or written while upkeep was failing), and re-attaches the tail
above them, all in one transaction: a concurrent reader sees the rows either before or after.
The same works on the head, for making regular partitions for the past (`since`).

Every boundary is a UTC midnight (and so a whole UTC hour, which prune relies on: db.retention).
Each partition's indexes are named after the parent's with the partition's name appended
(`ix_events_created_at_id_p20261201`), so a plan names the index it uses wherever it runs.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg

from db.engine import Database
from db.urls import as_libpq_url

log = logging.getLogger(__name__)

SCHEMA = "event_partitions"
HEAD = "head"
TAIL = "tail"
COLUMNS = "id, component, environment, email, message, data, created_at"

# How far ahead of now regular partitions exist (rounded up to whole partitions): month -> this month
# and the next one or two, week -> 5 to 6 weeks, day -> 31 to 32 days. Upkeep runs hourly (and at
# every start and migrate), so 30 days is ~720 chances to fail, each logged, before a row would land
# in the tail; the tail takes it anyway, and the next successful upkeep moves it into its partition.
# An empty partition costs a few files (one per index) and nothing on reads, since plans prune it.
RUNWAY = timedelta(days=30)
UPKEEP_INTERVAL_S = 3600.0
# DDL on a partition takes an ACCESS EXCLUSIVE lock on `events` for a moment. Waiting behind a long
# reader would queue every other query behind us, so give up quickly and try again at the next upkeep.
LOCK_TIMEOUT = "2s"
# Upkeep and prune of several processes take turns (any constant, the same for every process).
PARTITIONS_LOCK_ID = 0x70617274


class PartitionInterval(StrEnum):
    """How much time one regular partition of `events` holds (EVENT_PARTITION_INTERVAL)."""

    MONTH = "month"
    WEEK = "week"  # ISO weeks, from Monday 00:00 UTC
    DAY = "day"


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of `events` and its bounds (None: MINVALUE below, MAXVALUE above)."""

    name: str
    lower: datetime | None
    upper: datetime | None


def period_start(moment: datetime, interval: PartitionInterval) -> datetime:
    """The start (UTC) of the period of `interval` that holds `moment`."""
    utc = moment.astimezone(UTC)
    day = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval is PartitionInterval.MONTH:
        return day.replace(day=1)
    if interval is PartitionInterval.WEEK:
        return day - timedelta(days=day.weekday())
    return day


def next_boundary(moment: datetime, interval: PartitionInterval) -> datetime:
    """The first period start of `interval` strictly after `moment`."""
    start = period_start(moment, interval)
    if interval is PartitionInterval.MONTH:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start + timedelta(days=7 if interval is PartitionInterval.WEEK else 1)


def periods(start: datetime, end: datetime, interval: PartitionInterval) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at the period boundaries of `interval` (the first and last may be partial)."""
    ranges = []
    while start < end:
        stop = min(next_boundary(start, interval), end)
        ranges.append((start, stop))
        start = stop
    return ranges


def partition_name(start: datetime) -> str:
    """`p20261201` for a partition starting at that UTC midnight (with the time when not midnight)."""
    utc = start.astimezone(UTC)
    return f"p{utc:%Y%m%d}" if utc.time() == datetime.min.time() else f"p{utc:%Y%m%d_%H%M%S}"


_PARTITIONS = f"""
SELECT name,
       CASE WHEN bound[1] = 'MINVALUE' THEN NULL ELSE btrim(bound[1], '''')::timestamptz END AS lower,
       CASE WHEN bound[2] = 'MAXVALUE' THEN NULL ELSE btrim(bound[2], '''')::timestamptz END AS upper
FROM (
    SELECT c.relname AS name,
           regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\((.*)\\) TO \\((.*)\\)') AS bound
    FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'public.events'::regclass AND c.relnamespace = '{SCHEMA}'::regnamespace
) AS partitions
ORDER BY lower NULLS FIRST
"""


async def event_partitions(connection: asyncpg.Connection) -> list[Partition]:
    """The partitions of `events`, oldest range first (head first, tail last)."""
    return [Partition(row["name"], row["lower"], row["upper"]) for row in await connection.fetch(_PARTITIONS)]


def _literal(moment: datetime) -> str:
    return f"'{moment.astimezone(UTC).isoformat()}'"  # a datetime's isoformat needs no escaping


async def create_partition(connection: asyncpg.Connection, name: str, lower: str, upper: str) -> None:
    """Attach a new empty partition `name` for [lower, upper) (SQL bounds), its indexes named after ours."""
    await connection.execute(
        f"CREATE TABLE {SCHEMA}.{name} PARTITION OF events FOR VALUES FROM ({lower}) TO ({upper})"
    )
    children = await connection.fetch(
        "SELECT child.relname AS child, parent.relname AS parent FROM pg_index AS x "
        "JOIN pg_class AS child ON child.oid = x.indexrelid "
        "JOIN pg_inherits AS i ON i.inhrelid = x.indexrelid "
        "JOIN pg_class AS parent ON parent.oid = i.inhparent "
        "WHERE x.indrelid = $1::regclass",
        f"{SCHEMA}.{name}",
    )
    for row in children:
        await connection.execute(f'ALTER INDEX {SCHEMA}."{row["child"]}" RENAME TO "{row["parent"]}_{name}"')


async def _carve(
    connection: asyncpg.Connection, catch_all: Partition, ranges: list[tuple[datetime, datetime]]
) -> list[str]:
    """Make regular partitions for `ranges` (adjacent, inside the head or tail) and shrink it to fit.

    The rows the catch-all holds in those ranges move into them. Moving them fires no trigger of
    `events` (statement triggers fire for statements on the parent only), as it should: the rows stay.
    """
    await connection.execute(f"ALTER TABLE events DETACH PARTITION {SCHEMA}.{catch_all.name}")
    made, moved = [], 0
    for lower, upper in ranges:
        name = partition_name(lower)
        await create_partition(connection, name, _literal(lower), _literal(upper))
        status = await connection.execute(
            f"WITH moved AS (DELETE FROM {SCHEMA}.{catch_all.name} "
            f"WHERE created_at >= $1 AND created_at < $2 RETURNING {COLUMNS}) "
            f"INSERT INTO {SCHEMA}.{name} ({COLUMNS}) SELECT {COLUMNS} FROM moved",
            lower,
            upper,
        )
        moved += int(status.split()[-1])  # "INSERT 0 <n>"
        made.append(name)
    if moved:  # rows written by hand outside the runway, or while upkeep was failing
        log.warning("moved %d events from %s into %s to %s", moved, catch_all.name, made[0], made[-1])
    bound = (
        f"FROM ({_literal(ranges[-1][1])}) TO (MAXVALUE)"
        if catch_all.name == TAIL
        else f"FROM (MINVALUE) TO ({_literal(ranges[0][0])})"
    )
    # Checks the catch-all's remaining rows against its new bound: a scan, of rows that should not exist.
    await connection.execute(
        f"ALTER TABLE events ATTACH PARTITION {SCHEMA}.{catch_all.name} FOR VALUES {bound}"
    )
    return made


async def ensure_partitions(
    connection: asyncpg.Connection,
    interval: PartitionInterval,
    *,
    now: datetime,
    since: datetime | None = None,
) -> list[str]:
    """Make the regular partitions missing up to RUNWAY past `now` (and back to `since`); their names.

    Run inside a transaction (`maintain_partitions` opens one). Ranges already covered by regular
    partitions, of whatever interval, are left as they are.
    """
    partitions = await event_partitions(connection)
    if not partitions:  # a schema older than migration 0008: nothing to keep yet
        return []
    head, tail = partitions[0], partitions[-1]
    made = []
    horizon = now + RUNWAY
    if tail.lower is not None and tail.lower < horizon:
        end = horizon if period_start(horizon, interval) == horizon else next_boundary(horizon, interval)
        made += await _carve(connection, tail, periods(tail.lower, end, interval))
    if since is not None and head.upper is not None and since < head.upper:
        made += await _carve(connection, head, periods(period_start(since, interval), head.upper, interval))
    return sorted(made)


async def lock_partitions(connection: asyncpg.Connection) -> None:
    """Take the partitions' turn (transaction-scoped) and bound how long DDL waits for `events`."""
    await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITIONS_LOCK_ID)


async def maintain_partitions(
    connection: asyncpg.Connection,
    interval: PartitionInterval,
    *,
    now: datetime | None = None,
    since: datetime | None = None,
) -> list[str]:
    """`ensure_partitions` in a transaction of its own, taking turns with other processes."""
    async with connection.transaction():
        await lock_partitions(connection)
        made = await ensure_partitions(connection, interval, now=now or datetime.now(UTC), since=since)
    if made:
        log.info("created partitions of events: %s", ", ".join(made))
    return made


async def maintain_partitions_at(url: str, interval: PartitionInterval) -> list[str]:
    """`maintain_partitions` on a connection of its own (for `migrate`, which has no pool)."""
    connection = await asyncpg.connect(as_libpq_url(url))  # any spelling Settings accepts
    try:
        return await maintain_partitions(connection, interval)
    finally:
        await connection.close()


@asynccontextmanager
async def partition_upkeep(
    database: Database, interval: PartitionInterval, *, every_s: float = UPKEEP_INTERVAL_S
) -> AsyncIterator[None]:
    """Make partitions ahead now and every `every_s` seconds while the block runs.

    A failure (a lock not granted in time, the database away) is logged and retried at the next
    round: RUNWAY leaves weeks of rounds before a partition is actually needed.
    """

    async def once() -> None:
        try:
            async with database.single_statement() as connection:
                await maintain_partitions(connection, interval)
        except Exception as error:
            log.warning(
                "could not create the partitions of events ahead (retrying in %.0f s): %r", every_s, error
            )

    async def rounds() -> None:
        while True:
            await asyncio.sleep(every_s)
            await once()

    await once()
    task = asyncio.create_task(rounds(), name="partition-upkeep")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
