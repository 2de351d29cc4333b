"""The hourly rollups stay equal to counting the events, whatever writes or deletes them."""

import asyncio
from datetime import UTC, datetime, timedelta

from db.engine import Database
from db.filters import EventFilter
from db.group_commit import GroupCommitter
from db.idempotency import KeyedEvent
from db.repository import insert_event, insert_events
from db.retention import prune_events_before
from db.stats import Bucket, Dimension, StatsRequest, event_stats
from db.validation import NewEvent
from db.writes import KeyScope, record_many, record_one
from tests.db.test_stats import generated_rows
from tests.graphql_schema.support import event_row, seed

SCOPE = KeyScope(owner="", window=timedelta(hours=24))

# The rollups as the events say they should be, and as the triggers kept them.
FROM_EVENTS = (
    "SELECT date_trunc('hour', created_at, 'UTC') AS hour, component, environment, count(*) AS count, "
    "min(created_at) AS first_at, max(created_at) AS last_at FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
KEPT = (
    "SELECT hour, component, environment, count, first_at, last_at FROM event_counts_hourly ORDER BY 1, 2, 3"
)


async def assert_rollups_match_the_events(database: Database) -> int:
    """Every rollup row equals the count over its hour's events; returns the rollups' total."""
    async with database.single_statement() as connection:
        expected = [tuple(row) for row in await connection.fetch(FROM_EVENTS)]
        kept = [tuple(row) for row in await connection.fetch(KEPT)]
    assert kept == expected
    return sum(row[3] for row in kept)


def new_event(index: int, component: str = "order") -> NewEvent:
    return NewEvent(component, "production", "ade@example.com", f"event {index}", {})


async def test_batches_and_single_inserts_are_counted_in_their_own_statement(database: Database) -> None:
    async with database.single_statement() as connection:
        await insert_events(connection, [new_event(i, ("order", "billing")[i % 2]) for i in range(300)])
        await insert_event(connection, new_event(300))
    assert await assert_rollups_match_the_events(database) == 301


async def test_group_committed_singles_are_counted_once_each(database: Database) -> None:
    writer = GroupCommitter(database, max_rows=64, max_wait_s=0.05)
    await writer.start()
    try:
        await asyncio.gather(*(writer.record(new_event(i, ("a", "b", "c")[i % 3])) for i in range(200)))
    finally:
        await writer.stop()
    assert writer.stats.statements < 200
    assert await assert_rollups_match_the_events(database) == 200


async def test_idempotent_replays_count_nothing_twice(database: Database) -> None:
    writer = GroupCommitter(database, max_rows=1, max_wait_s=0)
    await writer.start()
    try:
        for _attempt in range(3):
            await record_one(writer, database, new_event(1), key="once", scope=SCOPE)
            await record_many(
                database, [KeyedEvent(new_event(2), "twice"), KeyedEvent(new_event(3), None)], scope=SCOPE
            )
    finally:
        await writer.stop()
    # "once" and "twice" once each, the unkeyed batch item on every attempt.
    assert await assert_rollups_match_the_events(database) == 1 + 1 + 3


async def test_a_failed_insert_leaves_the_rollups_as_they_were(database: Database) -> None:
    await seed(database, [event_row()])
    async with database.transaction() as connection:
        try:
            async with connection.transaction():
                await insert_events(connection, [new_event(1)])
                await connection.execute("SELECT 1 / 0")
        except Exception:
            pass
    assert await assert_rollups_match_the_events(database) == 1


async def test_deletes_subtract_and_give_hours_their_new_first_and_last_events(database: Database) -> None:
    rows = generated_rows(2_000)
    await seed(database, rows)
    async with database.single_statement() as connection:
        # The earliest and the latest events of many hours, one in three of the rest, and a whole hour.
        await connection.execute(
            "DELETE FROM events WHERE id IN (SELECT DISTINCT ON (date_trunc('hour', created_at), component) "
            "id FROM events ORDER BY date_trunc('hour', created_at), component, created_at)"
        )
        await connection.execute(
            "DELETE FROM events WHERE id IN (SELECT DISTINCT ON (date_trunc('hour', created_at), component) "
            "id FROM events ORDER BY date_trunc('hour', created_at), component, created_at DESC)"
        )
        await connection.execute("DELETE FROM events WHERE substr(message, 7)::int % 3 = 0")
        await connection.execute(
            "DELETE FROM events WHERE date_trunc('hour', created_at) = "
            "(SELECT date_trunc('hour', min(created_at)) FROM events)"
        )
    assert 0 < await assert_rollups_match_the_events(database) < 2_000


async def test_prune_keeps_the_rollups_of_what_it_leaves(database: Database) -> None:
    await seed(database, generated_rows(2_000))
    await prune_events_before(database, datetime(2026, 6, 1, 12, 30, tzinfo=UTC), batch_size=97)
    assert 0 < await assert_rollups_match_the_events(database) < 2_000
    result = await _daily(database)
    assert result.source == "rollups"
    assert min(row.first_at for row in result.rows) >= datetime(2026, 6, 1, 12, 30, tzinfo=UTC)


async def test_updates_move_counts_and_truncate_empties_the_rollups(database: Database) -> None:
    await seed(database, generated_rows(500))
    async with database.single_statement() as connection:
        await connection.execute(
            "UPDATE events SET component = 'moved', created_at = created_at + interval '90 minutes' "
            "WHERE substr(message, 7)::int % 2 = 0"
        )
    assert await assert_rollups_match_the_events(database) == 500
    async with database.single_statement() as connection:
        await connection.execute("TRUNCATE events")
    assert await assert_rollups_match_the_events(database) == 0


async def _daily(database: Database):
    request = StatsRequest(EventFilter(), (Dimension.COMPONENT,), Bucket.DAY, "Europe/Berlin", first=500)
    async with database.single_statement() as connection:
        return await event_stats(connection, request)
