"""Failures around a write: conflicts are retryable, a connection dropped after COMMIT is no error.

Every failure here is a real one: a deadlock between two transactions, a serialization failure
between two SERIALIZABLE ones, and a backend killed with pg_terminate_backend after its COMMIT.
"""

import asyncio
from typing import Any

import asyncpg
import pytest

from db.engine import Database, DatabaseUnavailable
from db.repository import insert_event
from db.validation import NewEvent
from tests.connection_kills import kill_before_release


def new_event(message: str) -> NewEvent:
    return NewEvent(
        component="order", environment="production", email="ade@example.com", message=message, data={}
    )


async def stored_messages(database_url: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        return [row["message"] for row in await connection.fetch("SELECT message FROM events ORDER BY 1")]
    finally:
        await connection.close()


async def test_a_deadlock_between_two_transactions_is_database_unavailable(database: Database) -> None:
    holding = [asyncio.Event(), asyncio.Event()]

    async def lock_in_order(first: int, second: int, me: int) -> None:
        async with database.transaction() as connection:
            await connection.execute("SELECT pg_advisory_xact_lock($1)", first)
            holding[me].set()
            await holding[1 - me].wait()
            # Each now waits for the lock the other holds: PostgreSQL rolls one of them back.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", second)

    outcomes = await asyncio.gather(lock_in_order(1, 2, 0), lock_in_order(2, 1, 1), return_exceptions=True)
    failures = [outcome for outcome in outcomes if outcome is not None]
    assert len(failures) == 1, outcomes
    assert isinstance(failures[0], DatabaseUnavailable), failures
    assert isinstance(failures[0].__cause__, asyncpg.DeadlockDetectedError)


async def test_a_serialization_failure_is_database_unavailable(database: Database, database_url: str) -> None:
    first: Any = database.transaction()
    early = await first.__aenter__()
    try:
        await early.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        await early.fetchval("SELECT count(*) FROM event_counts_hourly")
        with pytest.raises(DatabaseUnavailable) as raised:
            async with database.transaction() as late:
                await late.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                await late.fetchval("SELECT count(*) FROM event_counts_hourly")  # its snapshot is taken now
                await insert_event(early, new_event("first"))
                await first.__aexit__(None, None, None)
                first = None
                # The hour's rollup row (same component and environment) changed after `late`'s
                # snapshot: `late` cannot be serialised after `early`.
                await insert_event(late, new_event("second"))
    finally:
        if first is not None:
            await first.__aexit__(None, None, None)
    assert isinstance(raised.value.__cause__, asyncpg.SerializationError)
    assert await stored_messages(database_url) == ["first"]


@pytest.mark.parametrize("explicit_transaction", [True, False], ids=["transaction", "single_statement"])
async def test_a_connection_killed_after_commit_does_not_fail_the_committed_write(
    own_database: Database,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    explicit_transaction: bool,
) -> None:
    killing = kill_before_release(own_database, database_url, monkeypatch)
    block = own_database.transaction if explicit_transaction else own_database.single_statement
    async with block() as connection:
        await insert_event(connection, new_event("committed"))
    assert killing.kills == 1
    assert await stored_messages(database_url) == ["committed"]
    monkeypatch.undo()
    # The dead connection left the pool: every slot still serves (more rounds than slots), and
    # none of them is the killed backend. (Release sends nothing, so the pool finds the drop when
    # it next hands the connection out; a release that does fail is logged: db.engine.)
    served = set()
    for _ in range(5):
        async with own_database.transaction() as connection:
            assert await connection.fetchval("SELECT 1") == 1
            served.add(connection.get_server_pid())
    assert not served & set(killing.killed_pids)


async def test_a_failed_block_keeps_its_own_error_when_release_fails_too(
    own_database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    killing = kill_before_release(own_database, database_url, monkeypatch)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with own_database.transaction() as connection:
            await connection.execute("SELECT 1")
            raise asyncpg.UniqueViolationError("the block's own error")
    assert killing.kills == 1
