"""Idempotent writes at the repository: one event per key, replays, conflicts, concurrency, expiry."""

import asyncio
from datetime import timedelta

import pytest

from db.engine import Database
from db.idempotency import (
    IdempotencyKeyReused,
    KeyedEvent,
    forget_keys_before,
    insert_event_once,
    insert_events_once,
)
from db.validation import NewEvent

WINDOW = timedelta(hours=24)
EVENT = NewEvent("order", "production", "ade@example.com", "paid", {"a": 1, "b": [1, 2]})


async def _once(database: Database, event: NewEvent, key: str, owner: str = ""):
    async with database.transaction() as connection:
        return await insert_event_once(connection, event, owner=owner, key=key, window=WINDOW)


async def _count(database: Database, table: str = "events") -> int:
    async with database.transaction() as connection:
        return await connection.fetchval(f"SELECT count(*) FROM {table}")


@pytest.fixture(autouse=True)
async def no_keys(database: Database) -> None:
    async with database.transaction() as connection:
        await connection.execute("TRUNCATE idempotency_keys")


async def test_a_retry_with_the_same_key_returns_the_first_event_and_writes_nothing(
    database: Database,
) -> None:
    first = await _once(database, EVENT, "k-1")
    again = await _once(database, EVENT, "k-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.record["id"] == first.record["id"]
    assert await _count(database) == 1


async def test_key_order_inside_data_does_not_make_a_different_request(database: Database) -> None:
    await _once(database, EVENT, "k-1")
    reordered = NewEvent(
        EVENT.component, EVENT.environment, EVENT.email, EVENT.message, {"b": [1, 2], "a": 1}
    )
    assert (await _once(database, reordered, "k-1")).replayed


async def test_the_same_key_with_a_different_request_is_refused(database: Database) -> None:
    await _once(database, EVENT, "k-1")
    other = NewEvent(EVENT.component, EVENT.environment, EVENT.email, "refunded", EVENT.data)
    with pytest.raises(IdempotencyKeyReused, match="different request"):
        await _once(database, other, "k-1")
    assert await _count(database) == 1


async def test_keys_belong_to_their_owner(database: Database) -> None:
    mine = await _once(database, EVENT, "k-1", owner="key-a")
    theirs = await _once(database, EVENT, "k-1", owner="key-b")
    assert not theirs.replayed and theirs.record["id"] != mine.record["id"]


async def test_twenty_concurrent_retries_with_one_key_write_exactly_one_event(database: Database) -> None:
    results = await asyncio.gather(*(_once(database, EVENT, "burst") for _ in range(20)))
    assert len({result.record["id"] for result in results}) == 1
    assert sum(not result.replayed for result in results) == 1
    assert await _count(database) == 1


async def test_a_key_is_free_again_after_the_window(database: Database) -> None:
    first = await _once(database, EVENT, "k-1")
    async with database.transaction() as connection:
        await connection.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    later = await _once(database, EVENT, "k-1")
    assert not later.replayed and later.record["id"] != first.record["id"]


async def test_a_failed_first_attempt_leaves_the_key_unused(database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with database.transaction() as connection:
            await insert_event_once(connection, EVENT, owner="", key="k-1", window=WINDOW)
            raise RuntimeError("the request failed after the insert; the transaction rolls back")
    assert not (await _once(database, EVENT, "k-1")).replayed
    assert await _count(database) == 1


async def test_a_batch_mixes_new_replayed_and_unkeyed_items_in_order(database: Database) -> None:
    earlier = await _once(database, EVENT, "k-1")
    second = NewEvent("order", "production", "ade@example.com", "second", {})
    async with database.transaction() as connection:
        results = await insert_events_once(
            connection,
            [KeyedEvent(second, "k-2"), KeyedEvent(EVENT, "k-1"), KeyedEvent(second)],
            owner="",
            window=WINDOW,
        )
    assert [result.replayed for result in results] == [False, True, False]
    assert results[1].record["id"] == earlier.record["id"]
    assert await _count(database) == 3


async def test_old_keys_are_forgotten(database: Database) -> None:
    await _once(database, EVENT, "old")
    await _once(database, EVENT, "new")
    async with database.transaction() as connection:
        await connection.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE key = 'old'"
        )
        assert await forget_keys_before(connection, WINDOW) == 1
    assert await _count(database, "idempotency_keys") == 1
