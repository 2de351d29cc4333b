"""Event ids are UUIDv7 made from the commit-order stamp: they sort like (created_at, id), everywhere."""

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from db.engine import Database
from db.filters import EventFilter
from db.group_commit import GroupCommitter
from db.repository import EventKey, insert_event, insert_events, list_events_page
from db.validation import NewEvent


def new_event(message: str) -> NewEvent:
    return NewEvent("order", "production", "ade@example.com", message, {})


def assert_version_7_of(row: asyncpg.Record) -> None:
    """A version 7 id (RFC 9562) whose time is the row's created_at, to the microsecond it can hold."""
    event_id: uuid.UUID = row["id"]
    assert (event_id.version, event_id.variant) == (7, uuid.RFC_4122)
    created_us = round(row["created_at"].timestamp() * 1_000_000)
    assert event_id.int >> 80 == created_us // 1000  # unix_ts_ms
    assert (event_id.int >> 64) & 0xFFF == (created_us % 1000) * 4096 // 1000  # sub-millisecond


async def stored_in_log_order(database: Database) -> list[asyncpg.Record]:
    async with database.single_statement() as connection:
        return await connection.fetch("SELECT id, created_at, message FROM events ORDER BY created_at, id")


async def test_a_batchs_ids_are_version_7_and_ascend_in_input_order(database: Database) -> None:
    async with database.single_statement() as connection:
        rows = await insert_events(connection, [new_event(f"{n:04}") for n in range(1_000)])

    for row in rows:
        assert_version_7_of(row)
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


async def test_group_committed_ids_ascend_in_arrival_order(database: Database) -> None:
    writer = GroupCommitter(database, max_rows=8, max_wait_s=0.2)
    await writer.start()
    try:
        # gather starts the calls in list order, and each queues its event before it first waits.
        rows = await asyncio.gather(*(writer.record(new_event(f"{n:02}")) for n in range(50)))
    finally:
        await writer.stop()

    assert writer.stats.batches_committed > 1  # several commits, so the order holds across them too
    assert [row["message"] for row in rows] == [f"{n:02}" for n in range(50)]
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids)
    for row in rows:
        assert_version_7_of(row)


async def test_ids_of_concurrent_writers_sort_like_created_at(database_url: str, database: Database) -> None:
    """Eight connections (as eight processes would) racing batches and single events."""

    async def write(worker: int) -> None:
        connection = await asyncpg.connect(database_url)
        try:
            for round_ in range(10):
                if round_ % 2:
                    await insert_event(connection, new_event(f"w{worker}"))
                else:
                    await insert_events(connection, [new_event(f"w{worker}")] * 20)
        finally:
            await connection.close()

    await asyncio.gather(*(write(worker) for worker in range(8)))

    rows = await stored_in_log_order(database)
    assert len(rows) == 8 * (5 * 20 + 5)
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids)


async def test_hand_written_rows_get_a_version_7_id_by_default(database: Database) -> None:
    async with database.single_statement() as connection:
        event_id = await connection.fetchval(
            "INSERT INTO events (component, environment, message, data) "
            "VALUES ('order', 'production', 'by hand', '{}') RETURNING id"
        )
    assert event_id.version == 7


@pytest.mark.parametrize("newest_first", [False, True], ids=["oldest first", "newest first"])
async def test_pages_keep_the_created_at_order_with_old_random_ids_before_new_ones(
    database: Database, newest_first: bool
) -> None:
    """Events from before version 7 ids keep theirs; a cursor walk still follows (created_at, id)."""
    async with database.single_statement() as connection:
        # Two older events sharing one created_at (as batches did before the event clock), with
        # version 4 ids: their tie is broken by id, as it always was.
        old = datetime(2026, 1, 1, tzinfo=UTC)
        await connection.executemany(
            "INSERT INTO events (id, component, environment, message, data, created_at) "
            "VALUES ($1, 'order', 'production', $2, '{}', $3)",
            [(uuid.uuid4(), "old", old), (uuid.uuid4(), "old", old)],
        )
    async with database.single_statement() as connection:
        await insert_events(connection, [new_event(f"new {n}") for n in range(5)])
    expected = [row["id"] for row in await stored_in_log_order(database)]
    assert [row["message"] for row in await stored_in_log_order(database)][:2] == ["old", "old"]

    walked: list[uuid.UUID] = []
    after: EventKey | None = None
    while True:
        async with database.single_statement() as connection:
            rows, more = await list_events_page(
                connection, EventFilter(), newest_first=newest_first, after=after, before=None, limit=1
            )
        walked += [row["id"] for row in rows]
        if not more:
            break
        after = EventKey(rows[-1]["created_at"], rows[-1]["id"])
    assert walked == (expected[::-1] if newest_first else expected)
