"""GroupCommitter: concurrent writes share statements, each caller gets its own committed event."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from db.engine import Database, DatabaseUnavailable
from db.group_commit import GroupCommitter
from db.validation import NewEvent

REFUSED = "refused by the database"


def new_event(message: str) -> NewEvent:
    return NewEvent(
        component="order", environment="production", email="ade@example.com", message=message, data={}
    )


@asynccontextmanager
async def running_writer(
    database: Database, *, max_rows: int = 256, max_wait_s: float = 0.002
) -> AsyncIterator[GroupCommitter]:
    writer = GroupCommitter(database, max_rows=max_rows, max_wait_s=max_wait_s)
    await writer.start()
    try:
        yield writer
    finally:
        await writer.stop()


async def stored_messages(database_url: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        return [row["message"] for row in await connection.fetch("SELECT message FROM events")]
    finally:
        await connection.close()


@pytest.fixture
def messages() -> list[str]:
    return [f"event {index}" for index in range(50)]


async def test_concurrent_records_share_one_statement_and_each_gets_its_own_event(
    database: Database, database_url: str, messages: list[str]
) -> None:
    async with running_writer(database, max_wait_s=0.2) as writer:
        records = await asyncio.gather(*(writer.record(new_event(message)) for message in messages))
        assert writer.stats.statements == 1
        assert writer.stats.events_committed == len(messages)
    assert [record["message"] for record in records] == messages
    assert len({record["id"] for record in records}) == len(messages)
    assert sorted(await stored_messages(database_url)) == sorted(messages)


async def test_a_lone_record_does_not_wait_for_the_window(database: Database) -> None:
    async with running_writer(database, max_wait_s=5) as writer:
        await writer.record(new_event("warm-up"))
        started = time.monotonic()
        record = await writer.record(new_event("alone"))
        assert time.monotonic() - started < 1
    assert record["message"] == "alone"


async def test_a_window_closes_once_the_previous_batchs_callers_are_back(
    database: Database, database_url: str
) -> None:
    """Four callers writing in a loop: each batch holds the four, and after the first (whose window
    has no previous batch to go by, so it waits it out) none waits for companions already there."""
    clients, rounds, window_s = 4, 4, 1.0
    first_round_done = asyncio.Event()
    answered = 0

    async def client(index: int) -> None:
        nonlocal answered
        for round_number in range(rounds):
            await writer.record(new_event(f"client {index} round {round_number}"))
            answered += 1
            if answered == clients:
                first_round_done.set()

    async with running_writer(database, max_wait_s=window_s) as writer:
        loops = asyncio.gather(*(client(index) for index in range(clients)))
        await first_round_done.wait()
        later_rounds_started = time.monotonic()
        await loops
        later_rounds_s = time.monotonic() - later_rounds_started
        assert writer.stats.statements == rounds
    assert later_rounds_s < window_s, f"{rounds - 1} rounds took {later_rounds_s:.2f} s: windows waited out"
    assert len(await stored_messages(database_url)) == clients * rounds


async def test_a_batch_holds_at_most_max_rows(database: Database, messages: list[str]) -> None:
    async with running_writer(database, max_rows=8, max_wait_s=0.2) as writer:
        records = await asyncio.gather(*(writer.record(new_event(message)) for message in messages))
        assert writer.stats.statements == 7  # ceil(50 / 8)
    assert [record["message"] for record in records] == messages


@pytest.mark.parametrize(("max_rows", "max_wait_s"), [(1, 0.2), (256, 0)])
async def test_max_rows_one_or_no_wait_writes_each_event_on_its_own(
    database: Database, messages: list[str], max_rows: int, max_wait_s: float
) -> None:
    async with running_writer(database, max_rows=max_rows, max_wait_s=max_wait_s) as writer:
        assert not writer.coalescing
        records = await asyncio.gather(*(writer.record(new_event(message)) for message in messages))
        assert writer.stats.statements == len(messages)
    assert [record["message"] for record in records] == messages


@pytest.fixture
async def check_constraint(database: Database) -> AsyncIterator[None]:
    """A rule only the database enforces: the validator accepts the event, the INSERT fails."""
    async with database.transaction() as connection:
        await connection.execute(
            f"ALTER TABLE events ADD CONSTRAINT test_refused CHECK (message <> '{REFUSED}') NOT VALID"
        )
    try:
        yield
    finally:
        async with database.transaction() as connection:
            await connection.execute("ALTER TABLE events DROP CONSTRAINT test_refused")


async def test_a_row_the_database_refuses_fails_alone(
    database: Database, database_url: str, messages: list[str], check_constraint: None
) -> None:
    messages[17] = REFUSED
    async with running_writer(database, max_wait_s=0.2) as writer:
        results = await asyncio.gather(
            *(writer.record(new_event(message)) for message in messages), return_exceptions=True
        )
        # Split in halves down to the bad row: a handful of statements, not one per row.
        assert 1 < writer.stats.statements <= 2 * 6 + 1
    assert isinstance(results[17], asyncpg.CheckViolationError)
    others = [result for index, result in enumerate(results) if index != 17]
    assert [record["message"] for record in others] == messages[:17] + messages[18:]
    assert sorted(await stored_messages(database_url)) == sorted(messages[:17] + messages[18:])


async def test_an_unreachable_database_fails_every_caller_of_the_batch(
    server_url: str, messages: list[str]
) -> None:
    database = await Database.connect(server_url, min_size=1, max_size=1)
    await database.close()  # every acquire now fails as it would with the server gone
    async with running_writer(database, max_wait_s=0.2) as writer:
        results = await asyncio.gather(
            *(writer.record(new_event(message)) for message in messages), return_exceptions=True
        )
    assert all(isinstance(result, DatabaseUnavailable) for result in results), results


async def test_stop_commits_what_is_waiting_at_once_then_refuses_new_events(
    database: Database, database_url: str, messages: list[str]
) -> None:
    writer = GroupCommitter(database, max_rows=256, max_wait_s=30)
    await writer.start()
    waiting = [asyncio.create_task(writer.record(new_event(message))) for message in messages]
    await asyncio.sleep(0.1)  # queued, inside a 30 s window
    assert not any(task.done() for task in waiting)
    started = time.monotonic()
    await writer.stop()
    assert time.monotonic() - started < 5
    assert [(await task)["message"] for task in waiting] == messages
    assert sorted(await stored_messages(database_url)) == sorted(messages)
    with pytest.raises(DatabaseUnavailable):
        await writer.record(new_event("too late"))


async def test_a_caller_that_gives_up_before_its_turn_is_not_written(
    database: Database, database_url: str
) -> None:
    async with running_writer(database, max_wait_s=30) as writer:
        kept = [asyncio.create_task(writer.record(new_event(f"kept {index}"))) for index in range(2)]
        abandoned = asyncio.create_task(writer.record(new_event("abandoned")))
        await asyncio.sleep(0.05)
        abandoned.cancel()
    assert [(await task)["message"] for task in kept] == ["kept 0", "kept 1"]
    assert sorted(await stored_messages(database_url)) == ["kept 0", "kept 1"]
