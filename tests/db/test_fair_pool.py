"""db.engine.FairPool: connections go to callers in the order they asked for them.

asyncpg's own queue lets a caller that arrives while a woken waiter has not yet run take the
connection meant for it, and the waiter queues again at the back. With 40 callers on 2
connections, asyncpg alone let one caller be passed by 111-172 grants (2026-11-30); in order, no
caller can be passed by more than the 39 others.
"""

import asyncio

import asyncpg
import pytest

from db.engine import FairPool

CALLERS = 40
ROUNDS = 20


async def test_no_caller_is_passed_by_more_than_the_callers_ahead_of_it(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=2)
    connections = FairPool(pool)
    granted = 0
    most_passed = 0

    async def caller() -> None:
        nonlocal granted, most_passed
        for _ in range(ROUNDS):
            asked_at = granted
            connection = await connections.acquire(30)
            most_passed = max(most_passed, granted - asked_at)
            granted += 1
            try:
                await connection.fetchval("SELECT 1")
            finally:
                await connections.release(connection)

    try:
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
    finally:
        await pool.close()
    assert granted == CALLERS * ROUNDS
    assert most_passed <= CALLERS - 1


async def test_a_caller_that_waits_too_long_times_out_and_gives_its_turn_back(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    connections = FairPool(pool)
    try:
        held = await connections.acquire(5)
        with pytest.raises(TimeoutError):
            await connections.acquire(0.05)
        await connections.release(held)
        # The timed-out caller's turn is not kept: the one connection is there for the next.
        again = await connections.acquire(1)
        assert await again.fetchval("SELECT 1") == 1
        await connections.release(again)
    finally:
        await pool.close()


async def test_a_caller_cancelled_as_its_turn_comes_passes_the_turn_on(database_url: str) -> None:
    """Woken for a connection and cancelled before it ran (its client went away): the next caller
    must get the connection, not wait for a turn nobody will give back."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    connections = FairPool(pool)
    try:
        held = await connections.acquire(5)
        first = asyncio.create_task(connections.acquire(5))
        second = asyncio.create_task(connections.acquire(5))
        await asyncio.sleep(0.01)  # both are waiting, in order
        await connections.release(held)  # the turn goes to `first`...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        connection = await asyncio.wait_for(second, 2)
        assert await connection.fetchval("SELECT 1") == 1
        await connections.release(connection)
    finally:
        await pool.close()
