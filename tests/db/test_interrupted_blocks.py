"""A block interrupted between a statement's prepare and its execution leaves nothing open.

asyncpg prepares with Parse, Describe and Flush and sends the Sync only with the Bind and Execute
that follow. A task cancelled in between (a websocket client leaving while its subscription
starts) left the server in an implicit transaction holding AccessShare on `events` until the
connection's next statement: in an idle pool, for good, and every TRUNCATE, partition change or
prune waited behind it (CI hung on it on 2026-11-30). db.engine.may_be_mid_statement says why.
"""

import asyncio

import asyncpg
import pytest

from db.engine import Database


async def lock_is_free(database_url: str) -> bool:
    """Whether another session can take `events` for itself now (within half a second)."""
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await other.execute("SET LOCAL lock_timeout = '500ms'")
            await other.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        return True
    except asyncpg.LockNotAvailableError:
        return False
    finally:
        await other.close()


@pytest.mark.parametrize("explicit_transaction", [True, False], ids=["transaction", "single_statement"])
async def test_a_block_cancelled_after_a_prepare_leaves_no_lock_behind(
    own_database: Database, database_url: str, explicit_transaction: bool
) -> None:
    block = own_database.transaction if explicit_transaction else own_database.single_statement
    with pytest.raises(asyncio.CancelledError):
        async with block() as connection:
            # What `fetch` does first; a cancellation arriving now stops it before its Bind.
            await connection.prepare("SELECT id FROM events ORDER BY created_at DESC LIMIT 1")
            raise asyncio.CancelledError
    assert await lock_is_free(database_url), "a pooled connection still holds a lock on events"
    # The pool still serves, as many times as it has connections and more.
    for _ in range(3):
        async with own_database.single_statement() as connection:
            assert await connection.fetchval("SELECT count(*) FROM events") >= 0


async def test_a_block_failing_on_our_side_keeps_its_connection(own_database: Database) -> None:
    """An error between statements leaves the protocol in step: the connection stays pooled."""
    async with own_database.single_statement() as connection:
        backend = await connection.fetchval("SELECT pg_backend_pid()")
    with pytest.raises(ValueError):
        async with own_database.single_statement() as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") == backend
            raise ValueError("ours")
    async with own_database.single_statement() as connection:
        assert await connection.fetchval("SELECT pg_backend_pid()") == backend
