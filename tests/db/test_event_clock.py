"""The event clock's turns: statements insert at the same time and commit in stamp order.

db.event_clock says why; migration 0009 holds the two functions. What is pinned here is what the
turns promise beyond the readers' tests (tests/db/test_event_follow.py): a later statement does its
inserting while an earlier transaction is still open and waits only to commit; a turn that ended
without waiting (its statement failed, its transaction rolled back) does not let a later one commit
ahead of an earlier one still open; and concurrent writers never deadlock on the rollups.
"""

import asyncio
import uuid

import asyncpg
import pytest

from db.engine import Database
from db.filters import EventFilter
from db.repository import insert_event, list_events_page
from tests.db.support import new_event, record, unique

TIMEOUT_S = 20.0
TURN_LOCKS = 2026113002  # the advisory lock class of a turn (migration 0009)


async def visible(database: Database, component: str) -> list[uuid.UUID]:
    async with database.single_statement() as connection:
        rows, _ = await list_events_page(
            connection,
            EventFilter(component=component),
            newest_first=False,
            after=None,
            before=None,
            limit=50,
        )
    return [row["id"] for row in rows]


async def last_turn(database: Database) -> int:
    async with database.single_statement() as connection:
        return await connection.fetchval("SELECT last_value FROM event_clock_turn")


async def waiting_for_turns(database: Database) -> list[asyncpg.Record]:
    """The locks sessions are waiting for now, other than this one's."""
    async with database.single_statement() as connection:
        return await connection.fetch(
            "SELECT locktype, classid FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
        )


async def until_waiting(database: Database, writer: asyncio.Future[object]) -> list[asyncpg.Record]:
    """The ungranted locks once some session waits for one (the writer must not have finished)."""
    for _ in range(200):
        assert not writer.done(), writer
        if waits := await waiting_for_turns(database):
            return waits
        await asyncio.sleep(0.02)
    raise AssertionError("no session started waiting")


async def test_a_later_statement_inserts_while_an_earlier_transaction_is_open_and_waits_only_to_commit(
    database: Database,
) -> None:
    component = unique("overlap")
    async with database.transaction() as early:
        first = await insert_event(early, new_event(component, "A"))
        later = asyncio.ensure_future(record(database, component, 3))
        # It has its stamps and has inserted: what it waits for is the earlier turn, not the clock.
        waits = await until_waiting(database, later)
        assert [(row["locktype"], row["classid"]) for row in waits] == [("advisory", TURN_LOCKS)]
        assert await visible(database, component) == []
        await asyncio.sleep(0.2)
        assert not later.done()
    ids = await asyncio.wait_for(later, TIMEOUT_S)
    assert await visible(database, component) == [first["id"], *ids]


async def test_a_turn_that_ended_without_waiting_does_not_let_a_later_one_commit_ahead(
    database: Database,
) -> None:
    """A (open) took a turn, B took the next and failed in its statement, C the one after:
    C must still wait for A, though B, the turn just before C's, has ended."""
    component = unique("gap")
    async with database.transaction() as early:
        first = await insert_event(early, new_event(component, "A"))
        turns_before = await last_turn(database)
        with pytest.raises(asyncpg.InvalidTextRepresentationError):
            async with database.single_statement() as connection:
                # Refused after its turn was taken: the row's `data` is no JSON.
                await connection.fetch(
                    "WITH clock AS (SELECT event_clock_reserve(1) AS last_at) "
                    "INSERT INTO events (component, environment, message, data, created_at) "
                    "SELECT $1, 'production', 'B', ('not json ' || last_at::text)::jsonb, last_at FROM clock",
                    component,
                )
        assert await last_turn(database) == turns_before + 1
        # Another environment: no rollup row of A's to wait for, only A's turn.
        later = asyncio.ensure_future(record(database, component, environment="staging"))
        waits = await until_waiting(database, later)
        assert [(row["locktype"], row["classid"]) for row in waits] == [("advisory", TURN_LOCKS)]
        await asyncio.sleep(0.2)
        assert not later.done() and await visible(database, component) == []
    [last] = await asyncio.wait_for(later, TIMEOUT_S)
    assert await visible(database, component) == [first["id"], last]


async def test_a_turn_rolled_back_after_inserting_lets_the_next_commit_at_once(database: Database) -> None:
    component = unique("rollback")
    with pytest.raises(RuntimeError):
        async with database.transaction() as connection:
            await insert_event(connection, new_event(component, "gone"))
            raise RuntimeError("the caller gives up")
    ids = await asyncio.wait_for(record(database, component, 2), TIMEOUT_S)
    assert await visible(database, component) == ids


async def test_concurrent_writers_of_the_same_hours_never_deadlock_and_keep_the_rollups_exact(
    database: Database,
) -> None:
    """Every writer locks the same rollup rows; the wait before them keeps the order one order."""
    component = unique("crowd")

    async def writer(sizes: list[int]) -> list[uuid.UUID]:
        written: list[uuid.UUID] = []
        for size in sizes:
            written += await record(database, component, size)
        return written

    batches = await asyncio.wait_for(
        asyncio.gather(*(writer([1 + (n * 7 + k) % 30 for k in range(8)]) for n in range(8))), TIMEOUT_S
    )
    written = {event_id for batch in batches for event_id in batch}
    async with database.single_statement() as connection:
        stored = await connection.fetchval("SELECT count(*) FROM events WHERE component = $1", component)
        counted = await connection.fetchval(
            "SELECT sum(count) FROM event_counts_hourly WHERE component = $1", component
        )
    assert stored == counted == len(written) == sum(1 + (n * 7 + k) % 30 for n in range(8) for k in range(8))


async def test_a_second_inserting_statement_in_one_transaction_is_refused_not_deadlocked(
    database: Database,
) -> None:
    component = unique("twice")
    with pytest.raises(asyncpg.RaiseError, match="one statement per transaction"):
        async with database.transaction() as connection:
            await insert_event(connection, new_event(component, "first"))
            await insert_event(connection, new_event(component, "second"))
    assert await visible(database, component) == []  # the transaction was rolled back whole


async def test_a_long_run_of_turns_that_never_waited_costs_the_next_writer_no_lock_it_keeps(
    database: Database,
) -> None:
    """After many turns that ended without waiting (an outage that failed every statement after
    its reservation, say), the next writer looks back past each of them: it must not keep a lock
    per turn, or the lock table runs out and every writer after it fails the same way."""
    component = unique("outage")
    async with database.single_statement() as connection:
        await connection.execute(
            "DO $$ BEGIN FOR i IN 1..20000 LOOP "
            "BEGIN PERFORM event_clock_reserve(1); RAISE EXCEPTION 'undone'; "
            "EXCEPTION WHEN raise_exception THEN NULL; END; "
            "END LOOP; END $$"
        )
    ids = await asyncio.wait_for(record(database, component, 2), TIMEOUT_S)
    assert await visible(database, component) == ids
