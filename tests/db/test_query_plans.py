"""Every documented filter is served by an index: EXPLAIN shows no sequential scan.

Run on a table of realistic size and spread (a tiny table would make a sequential scan the right
plan), with statistics gathered, against the exact SQL the repository sends.

The table is partitioned (db.partitions): besides the partitions holding the seeded rows, a plan
without a created_at bound also reads the partitions made ahead of time and the tail, which hold no
rows, and reading an empty table costs nothing whichever way PostgreSQL does it (for the GIN filters
it picks a sequential scan of them: none of their pages exist). Those empty partitions' scans are
left out of the plans checked here; every partition that holds rows must still use an index.
Statistics are gathered as autovacuum gathers them, on the partitions that received rows only.
"""

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db.filters import EventFilter
from db.repository import EventKey, page_query, stamped_query, stream_query

pytestmark = pytest.mark.slow

SINCE = datetime.now(UTC) - timedelta(days=2)
FILTERS = {
    "component": EventFilter(component="component-7"),
    "environment": EventFilter(environment="env-2"),
    "email": EventFilter(email="user-42@example.com"),
    "component and email": EventFilter(component="component-7", email="user-42@example.com"),
    "componentIn": EventFilter(component_in=("component-1", "component-2")),
    "environmentIn": EventFilter(environment_in=("env-1", "env-2")),
    "from (recent)": EventFilter(created_from=SINCE),
    "from and to": EventFilter(created_from=SINCE, created_to=SINCE + timedelta(hours=3)),
    "search": EventFilter(search="declined 4244"),
    "dataContains": EventFilter(data_contains={"tier": "gold", "order": 4242}),
}


@pytest.fixture(autouse=True)
def empty_events_table() -> None:
    """Overrides the suite's per-test truncation: these tests share one seeded table."""


@pytest.fixture(scope="module")
async def seeded(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """60,000 events over 90 days: 40 components, 4 environments, 2,000 emails, varied data."""
    connection = await asyncpg.connect(database_url)
    await connection.execute("TRUNCATE events")
    await connection.execute(
        """
        INSERT INTO events (component, environment, email, message, data, created_at)
        SELECT 'component-' || (n % 40), 'env-' || (n % 4), 'user-' || (n % 2000) || '@example.com',
               (ARRAY['payment declined', 'order shipped', 'login ok', 'cache miss'])[1 + n % 4] || ' #' || n,
               jsonb_build_object('tier', (ARRAY['gold', 'silver', 'bronze'])[1 + n % 3], 'order', n),
               now() - (n * interval '130 seconds')
        FROM generate_series(1, 60000) AS n
        """
    )
    for partition in await _partitions(connection, holding_rows=True):
        await connection.execute(f"ANALYZE {partition}")
    try:
        yield connection
    finally:
        await connection.execute("TRUNCATE events")
        await connection.close()


async def _partitions(connection: asyncpg.Connection, *, holding_rows: bool) -> list[str]:
    """The partitions of events (schema-qualified) that hold rows, or that hold none."""
    names = [
        row[0]
        for row in await connection.fetch(
            "SELECT c.oid::regclass::text FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        )
    ]
    return [
        name
        for name in names
        if await connection.fetchval(f"SELECT EXISTS (SELECT FROM {name})") == holding_rows
    ]


async def _plan(connection: asyncpg.Connection, sql: str, values: list[object]) -> str:
    """The plan's lines, without the sequential scans of partitions that hold no rows (see above)."""
    rows = await connection.fetch(f"EXPLAIN {sql}", *values)
    empty = {name.split(".")[-1] for name in await _partitions(connection, holding_rows=False)}
    lines, skipping_below = [], None
    for line in (row[0] for row in rows):
        depth = len(line) - len(line.lstrip())
        if skipping_below is not None and depth > skipping_below:
            continue  # the skipped scan's own Filter line
        skipping_below = None
        scan = re.match(r"\s*(->\s+)?Seq Scan on (\S+) ", line)
        if scan and scan.group(2) in empty:
            skipping_below = depth
            continue
        lines.append(line)
    return "\n".join(lines)


async def _first_page_plan(
    connection: asyncpg.Connection, event_filter: EventFilter, newest_first: bool
) -> str:
    """The plan of a GraphQL first page of 50 (`first: 50`, so 51 rows asked for)."""
    sql, values = page_query(
        event_filter,
        newest_first=newest_first,
        after=None,
        before=None,
        limit=51,
        scan_descending=newest_first,
    )
    return await _plan(connection, sql, values)


@pytest.mark.parametrize("name", sorted(FILTERS))
@pytest.mark.parametrize("newest_first", [True, False], ids=["newest first", "oldest first"])
async def test_a_graphql_page_of_a_documented_filter_uses_an_index(
    seeded: asyncpg.Connection, name: str, newest_first: bool
) -> None:
    plan = await _first_page_plan(seeded, FILTERS[name], newest_first)
    assert "Seq Scan" not in plan, plan


# A REST list returns every match. An environment is a quarter of this table (and of a real one,
# roughly): for that many rows, reading the table and sorting is PostgreSQL's cheaper plan and the
# right one, so those two filters are not held to "no sequential scan" here; every other
# documented filter selects few rows and must be served by an index.
LARGE_SHARE_FILTERS = ("environment", "environmentIn")


@pytest.mark.parametrize("name", sorted(set(FILTERS) - set(LARGE_SHARE_FILTERS)))
async def test_a_rest_list_of_a_selective_filter_uses_an_index(seeded: asyncpg.Connection, name: str) -> None:
    sql, values = stream_query(FILTERS[name])
    plan = await _plan(seeded, sql, values)
    assert "Seq Scan" not in plan, plan


@pytest.mark.parametrize("newest_first", [True, False], ids=["newest first", "oldest first"])
async def test_component_and_email_is_one_index_range_without_a_sort(
    seeded: asyncpg.Connection, newest_first: bool
) -> None:
    plan = await _first_page_plan(seeded, FILTERS["component and email"], newest_first)
    assert "ix_events_component_email_created_at_id" in plan, plan
    assert "Sort" not in plan, plan


async def test_paging_on_from_a_cursor_is_an_index_range(seeded: asyncpg.Connection) -> None:
    key_row = await seeded.fetchrow(
        "SELECT created_at, id FROM events ORDER BY created_at DESC, id DESC OFFSET 500 LIMIT 1"
    )
    sql, values = page_query(
        EventFilter(),
        newest_first=True,
        after=EventKey(key_row["created_at"], key_row["id"]),
        before=None,
        limit=51,
        scan_descending=True,
    )
    plan = await _plan(seeded, sql, values)
    assert "Index Scan Backward using ix_events_created_at_id" in plan, plan
    assert "Sort" not in plan, plan


@pytest.mark.parametrize("newest_first", [True, False], ids=["newest first", "oldest first"])
async def test_a_search_page_finds_its_matches_in_the_full_text_index_first(
    seeded: asyncpg.Connection, newest_first: bool
) -> None:
    # Read in list order with the words checked row by row, a search few events match read the
    # whole table (4-5 s at 1,000,000 events for a word no event holds): PostgreSQL guessed such a
    # page would fill soon. The list-order scan now runs only when the index found more matches
    # than db.repository.SEARCH_CANDIDATES (tests/db/test_search_pages.py checks the pages).
    plan = await _first_page_plan(seeded, FILTERS["search"], newest_first)
    found = plan.split("CTE found", 1)[1].split("One-Time Filter", 1)[0]
    assert "Bitmap Index Scan on ix_events_message_fts" in found, plan
    assert plan.count("One-Time Filter") == 2, plan
    assert "Seq Scan" not in plan, plan


# The live feed reads back the events of every notification it handles together: one, or several
# when they arrive close together. With the spans alone to go by, PostgreSQL guessed a ninth of the
# table per span and, from two spans on, read the whole table in parallel instead (250-450 ms a
# read at 1,000,000 events, 2026-11-30), which stalled the feed under steady writes.
@pytest.mark.parametrize("announcements", [1, 2, 3, 5, 12])
async def test_reading_announced_events_back_is_an_index_range_per_announcement(
    seeded: asyncpg.Connection, announcements: int
) -> None:
    stamps = [
        row["created_at"]
        for row in await seeded.fetch(
            "SELECT created_at FROM events ORDER BY created_at DESC LIMIT $1", 2 * announcements
        )
    ]
    oldest_first = stamps[::-1]
    spans = [(oldest_first[2 * n], oldest_first[2 * n + 1]) for n in range(announcements)]
    sql, values = stamped_query(spans)
    # This table is too small for PostgreSQL to weigh a parallel scan; priced as on a table of
    # millions, it does.
    parallel_priced = ("min_parallel_table_scan_size", "parallel_setup_cost", "parallel_tuple_cost")
    await seeded.execute("".join(f"SET {setting} = 0;" for setting in parallel_priced))
    try:
        plan = await _plan(seeded, sql, values)
    finally:
        await seeded.execute("".join(f"RESET {setting};" for setting in parallel_priced))
    assert "Index" in plan, plan
    assert "Seq Scan" not in plan, plan
