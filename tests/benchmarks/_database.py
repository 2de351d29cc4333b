"""The benchmark's PostgreSQL side: a server, fresh databases, a realistic seed, restoring the seed state."""

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from api.settings import Settings
from db.embedded import start_embedded
from db.ids import event_id
from db.migrate import upgrade_to_head
from db.partitions import maintain_partitions
from db.urls import as_libpq_url
from tests.support import with_database

COMPONENTS = (
    "order", "payment", "auth", "search", "inventory", "shipping", "checkout", "cart", "catalog",
    "billing", "notification", "mailer", "profile", "session", "recommendation", "review", "pricing",
    "warehouse", "analytics", "gateway",
)  # fmt: skip
ENVIRONMENTS = ("production", "staging", "development", "test")
EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.net")
DISTINCT_EMAILS = 10_000
SEED_SPAN = timedelta(days=90)  # created_at is spread uniformly over this span before the seed

_MESSAGE_STARTS = (
    "order failed", "payment declined", "user logged in", "cache miss for key", "request timed out",
    "retrying upstream call", "stock level low", "session expired", "invoice generated",
    "password reset requested", "rate limit exceeded", "webhook delivered",
)  # fmt: skip


def _sql_array(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(f"'{value}'" for value in values) + "]"


# One INSERT ... SELECT over generate_series; random() is seeded first, so a seed is reproducible.
# Components are mildly skewed, environments weighted like real traffic (mostly production);
# emails are strongly skewed (index = 10,000 * random()^2): a few heavy users with thousands of
# events, a long tail with a few dozen, so "about 5 rows" and "50+ rows" component/email pairs
# both exist. Messages are 20-80 characters, `data` a ~100-byte object; created_at is spread
# uniformly over the 90 days before the seed, and each id is made from it as the service makes ids
# (db.ids), so a lookup by id finds its partition at once.
SEED_SQL = f"""
INSERT INTO events (id, component, environment, email, message, data, created_at)
SELECT
    {event_id("created_at")},
    ({_sql_array(COMPONENTS)})[1 + floor({len(COMPONENTS)} * power(random(), 1.3))::int],
    CASE WHEN r_env < 0.60 THEN 'production' WHEN r_env < 0.85 THEN 'staging'
         WHEN r_env < 0.95 THEN 'development' ELSE 'test' END,
    'user' || email_index || '@' || ({_sql_array(EMAIL_DOMAINS)})[1 + email_index % {len(EMAIL_DOMAINS)}],
    left(({_sql_array(_MESSAGE_STARTS)})[1 + floor(random() * {len(_MESSAGE_STARTS)})::int]
         || ': ' || md5(i::text) || md5(random()::text), 20 + floor(random() * 61)::int),
    jsonb_build_object(
        'request_id', left(md5(i::text || 'r'), 16),
        'duration_ms', floor(random() * 2000)::int,
        'status', (ARRAY[200, 200, 200, 201, 204, 400, 404, 500])[1 + floor(random() * 8)::int],
        'retry', random() < 0.1
    ),
    created_at
FROM (
    SELECT i, random() AS r_env, floor({DISTINCT_EMAILS} * power(random(), 2))::int AS email_index,
           now() - random() * interval '{SEED_SPAN.days} days' AS created_at
    FROM generate_series(1, $1::int) AS i
) AS rows
"""


@dataclass(frozen=True)
class SeededDatabase:
    """A migrated, seeded database and what the measurements need to know about it."""

    url: str
    events: int
    seeded_at: datetime  # every seeded event is older; anything newer was written by a benchmark
    seed_s: float
    five_row_pairs: list[tuple[str, str]]  # (component, email) with about 5 events each
    five_row_counts: tuple[int, int]  # min and max rows among them
    fifty_row_pairs: list[tuple[str, str]]  # (component, email) with at least 50 events each
    fifty_row_counts: tuple[int, int]


async def _run(url: str, *statements: str | tuple[str, Any]) -> list[list[asyncpg.Record]]:
    """Run statements on one connection (a tuple is a statement and one argument); their rows."""
    connection = await asyncpg.connect(url)
    try:
        results = []
        for statement in statements:
            text, *args = statement if isinstance(statement, tuple) else (statement,)
            results.append(await connection.fetch(text, *args))
        return results
    finally:
        await connection.close()


def run_sql(url: str, *statements: str | tuple[str, Any]) -> list[list[asyncpg.Record]]:
    """Blocking `_run`."""
    return asyncio.run(_run(url, *statements))


@contextmanager
def postgres_server(database_url: str | None, workdir: Path) -> Iterator[str]:
    """A URL on a server where we may create databases: the given one, or a fresh embedded one."""
    if database_url:
        yield as_libpq_url(database_url)
        return
    folder = Path(tempfile.mkdtemp(prefix="pg-", dir=workdir))
    embedded = start_embedded(folder / "data")
    try:
        yield embedded.url
    finally:
        embedded.release()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str, label: str) -> Iterator[str]:
    """A new, empty database on the server (dropped at the end); yields its URL."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    run_sql(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        run_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _partitions_since(url: str, since: datetime) -> None:
    """Regular partitions back to `since`, so the seed spreads over them as real traffic would
    (rather than all landing in the head partition that holds everything older)."""
    connection = await asyncpg.connect(url)
    try:
        interval = Settings(_env_file=None).event_partition_interval  # type: ignore[call-arg]
        await maintain_partitions(connection, interval, since=since)
    finally:
        await connection.close()


def seed_database(url: str, events: int) -> SeededDatabase:
    """Migrate to head, insert `events` events, rebuild indexes, VACUUM ANALYZE, CHECKPOINT.

    The secondary indexes are dropped during the insert and recreated from their own definitions
    (read from pg_indexes, so they are exactly what the migrations made): the same end state as
    inserting with them in place, several times faster.
    """
    started = time.perf_counter()
    upgrade_to_head(url)
    asyncio.run(_partitions_since(url, datetime.now(UTC) - SEED_SPAN))
    (indexes,) = run_sql(
        url,
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'events' "
        "AND indexname <> 'pk_events' ORDER BY indexname",
    )
    run_sql(
        url,
        "SET maintenance_work_mem = '512MB'",
        *(f'DROP INDEX "{row["indexname"]}"' for row in indexes),
        "SELECT setseed(0.42)",
        (SEED_SQL, events),
        # A partitioned table's index reads "ON ONLY events" (the parent alone): recreate it on
        # every partition, as the migration made it.
        *(row["indexdef"].replace(" ON ONLY ", " ON ") for row in indexes),
    )
    run_sql(url, "VACUUM ANALYZE events", "CHECKPOINT")
    (stamp,) = run_sql(url, "SELECT max(created_at) AS seeded_at, count(*) AS n FROM events")
    five, fifty = _pairs(url)
    return SeededDatabase(
        url=url,
        events=stamp[0]["n"],
        seeded_at=stamp[0]["seeded_at"],
        seed_s=time.perf_counter() - started,
        five_row_pairs=[(row["component"], row["email"]) for row in five],
        five_row_counts=(min(row["n"] for row in five), max(row["n"] for row in five)),
        fifty_row_pairs=[(row["component"], row["email"]) for row in fifty],
        fifty_row_counts=(min(row["n"] for row in fifty), max(row["n"] for row in fifty)),
    )


def _pairs(url: str, how_many: int = 100) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """Component/email pairs closest to 5 rows, and pairs with 50 rows or more (or the largest)."""
    counted = "SELECT component, email, count(*)::int AS n FROM events GROUP BY component, email"
    five, fifty = run_sql(
        url,
        f"SELECT * FROM ({counted}) AS c ORDER BY abs(n - 5), md5(component || email) LIMIT {how_many}",
        f"SELECT * FROM ({counted}) AS c ORDER BY n >= 50 DESC, "
        f"CASE WHEN n >= 50 THEN md5(component || email) END, n DESC LIMIT {how_many}",
    )
    return five, fifty


def wait_until_quiet(url: str, timeout_s: float = 120) -> float:
    """Wait until no other session runs a statement in this database; seconds waited.

    wrk stops at the deadline with requests still in flight, and the server goes on executing
    them (64 batches of 1,000 events keep it busy for seconds): the next measurement must not
    overlap with that work, nor a cleanup race it.
    """
    started = time.monotonic()
    busy = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle'"
    )
    quiet_rounds = 0
    while quiet_rounds < 3 and time.monotonic() - started < timeout_s:
        (rows,) = run_sql(url, busy)
        quiet_rounds = quiet_rounds + 1 if rows[0][0] == 0 else 0
        time.sleep(0.1)
    return time.monotonic() - started


def restore_seed_state(database: SeededDatabase) -> int:
    """Delete what write benchmarks added and vacuum, so every point starts from the seed; rows removed."""
    wait_until_quiet(database.url)
    (deleted,) = run_sql(
        database.url,
        ("WITH gone AS (DELETE FROM events WHERE created_at > $1 RETURNING 1) SELECT count(*) FROM gone",
         database.seeded_at),
    )  # fmt: skip
    if deleted[0][0]:
        run_sql(database.url, "VACUUM ANALYZE events", "CHECKPOINT")
    return deleted[0][0]


def server_version(url: str) -> str:
    (rows,) = run_sql(url, "SHOW server_version")
    return rows[0][0]
