"""Readers that follow the log see every committed event exactly once, in order.

Stamps follow commit order (db.event_clock), so a cursor-following reader can never have an event
appear behind it; a follower (db.live_feed.follow) replays from the table, then goes live, and rides
out a lost LISTEN connection, a database restart and its own slowness with nothing but latency.
"""

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from db.embedded import EmbeddedPostgres
from db.engine import Database
from db.filters import EventFilter
from db.live_feed.follow import Follower
from db.live_feed.hub import EventHub
from db.live_feed.notifications import EventRecord
from db.repository import EventKey, event_key, insert_event, insert_events, list_events_page
from tests.db.support import new_event, record, unique
from tests.support import start_postgres, stop_postgres

TIMEOUT_S = 20.0


async def stored_ids(database: Database, component: str) -> list[uuid.UUID]:
    """Every event of `component` in log order, as the table has it."""
    async with database.single_statement() as connection:
        rows = await connection.fetch(
            "SELECT id FROM events WHERE component = $1 ORDER BY created_at, id", component
        )
    return [row["id"] for row in rows]


async def take(events: AsyncIterator[EventRecord], count: int) -> list[uuid.UUID]:
    async def collect() -> list[uuid.UUID]:
        return [(await anext(events))["id"] for _ in range(count)]

    return await asyncio.wait_for(collect(), TIMEOUT_S)


async def test_a_transaction_that_commits_last_is_stamped_after_every_earlier_commit(
    database: Database,
) -> None:
    """The issue's late commit: A inserts first and commits last; B cannot slip in before it."""
    component = unique("late")
    slow = await database.pool.acquire()
    try:
        transaction = slow.transaction()
        await transaction.start()
        [early] = [row["id"] for row in [await insert_event(slow, new_event(component, "A"))]]
        # B is recorded meanwhile: stamped after A, it waits for A to end before it commits.
        writer_b = asyncio.ensure_future(record(database, component))
        await asyncio.sleep(0.3)
        async with database.single_statement() as reader:
            rows, _ = await list_events_page(
                reader,
                EventFilter(component=component),
                newest_first=False,
                after=None,
                before=None,
                limit=10,
            )
        assert rows == []  # a reader now sees neither, so it holds no cursor that A could hide behind
        assert not writer_b.done()
        await transaction.commit()
    finally:
        await database.pool.release(slow)
    [late] = await asyncio.wait_for(writer_b, TIMEOUT_S)
    assert await stored_ids(database, component) == [early, late]


@pytest.mark.slow
async def test_a_tailing_reader_sees_every_committed_event_exactly_once_under_concurrent_writers(
    database: Database,
) -> None:
    """Writers of every kind (single events, batches, slow transactions) against a reader that keeps
    asking for what came after its cursor: in the end it has read the table, each event once."""
    component = unique("tail")
    committed: list[uuid.UUID] = []
    stop = asyncio.Event()
    writers_done = asyncio.Event()
    rng = random.Random(9)

    async def writer(kind: str) -> None:
        while not stop.is_set():
            if kind == "batch":
                committed.extend(await record(database, component, rng.randint(2, 40)))
            elif kind == "single":
                committed.extend(await record(database, component))
            else:  # a transaction that lingers between its insert and its commit
                async with database.transaction() as connection:
                    rows = await insert_events(connection, [new_event(component), new_event(component)])
                    await asyncio.sleep(rng.uniform(0, 0.01))
                committed.extend(row["id"] for row in rows)

    async def reader() -> list[uuid.UUID]:
        seen: list[uuid.UUID] = []
        cursor: EventKey | None = None
        while True:
            finished = writers_done.is_set()  # read before the page: after it, nothing more commits
            async with database.single_statement() as connection:
                rows, _ = await list_events_page(
                    connection,
                    EventFilter(component=component),
                    newest_first=False,
                    after=cursor,
                    before=None,
                    limit=rng.randint(1, 50),
                )
            seen.extend(row["id"] for row in rows)
            if rows:
                cursor = event_key(rows[-1])
            elif finished:
                return seen
            await asyncio.sleep(0)

    writers = [asyncio.ensure_future(writer(kind)) for kind in ("batch", "batch", "single", "single", "slow")]
    reading = asyncio.ensure_future(reader())
    await asyncio.sleep(3)
    stop.set()
    await asyncio.gather(*writers)
    writers_done.set()
    seen = await asyncio.wait_for(reading, TIMEOUT_S)
    assert len(committed) > 200
    assert len(seen) == len(set(seen)), "an event was read twice"
    assert sorted(seen) == sorted(committed), "an event was missed (or invented)"
    assert seen == await stored_ids(database, component)


async def test_a_follower_replays_after_its_position_then_goes_live_with_no_gap_or_duplicate(
    hub: EventHub, database: Database
) -> None:
    component = unique("resume")
    history = await record(database, component, 5)
    async with database.single_statement() as connection:
        row = await connection.fetchrow("SELECT created_at, id FROM events WHERE id = $1", history[1])
    follower = Follower(hub, database, EventFilter(component=component), after=event_key(row))
    events = aiter(follower)
    first = await take(events, 3)  # the replay: the three events after the second
    assert first == history[2:]

    async def steady_writes() -> list[uuid.UUID]:
        written: list[uuid.UUID] = []
        for round_ in range(40):
            written += await record(database, component, 1 + round_ % 3)
        return written

    written = await steady_writes()
    rest = await take(events, len(written))
    await events.aclose()  # type: ignore[attr-defined]
    assert rest == written


async def test_a_follower_from_now_on_gets_only_later_events(hub: EventHub, database: Database) -> None:
    component = unique("now")
    await record(database, component, 3)
    events = aiter(Follower(hub, database, EventFilter(component=component), after=None))
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.3)  # subscribed, waiting
    later = await record(database, component, 2)
    received = [(await asyncio.wait_for(pending, TIMEOUT_S))["id"], *await take(events, 1)]
    await events.aclose()  # type: ignore[attr-defined]
    assert received == later


async def test_a_lost_listen_connection_costs_only_latency(hub: EventHub, database: Database) -> None:
    component = unique("drop")
    events = aiter(Follower(hub, database, EventFilter(component=component), after=None))
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.3)
    before = await record(database, component, 2)
    received = [(await asyncio.wait_for(pending, TIMEOUT_S))["id"], *await take(events, 1)]
    async with database.single_statement() as admin:
        await admin.execute("SELECT pg_terminate_backend($1)", hub.listener_pid)
    during = await record(database, component, 3)  # committed while the feed may be deaf
    received += await take(events, 3)
    after = await record(database, component, 2)
    received += await take(events, 2)
    await events.aclose()  # type: ignore[attr-defined]
    assert received == before + during + after


async def test_a_follower_that_falls_behind_catches_up_from_the_table(database: Database) -> None:
    component = unique("slow")
    hub = EventHub(database, max_pending_events=3)
    await hub.start()
    try:
        events = aiter(Follower(hub, database, EventFilter(component=component), after=None))
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.3)
        written = await record(database, component)
        received = [(await asyncio.wait_for(pending, TIMEOUT_S))["id"]]
        for _ in range(10):  # nobody reads meanwhile: the live queue overflows
            written += await record(database, component)
        await asyncio.sleep(0.3)
        received += await take(events, 10)
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        await hub.stop()
    assert received == written


async def test_a_database_restart_costs_only_latency(own_server: EmbeddedPostgres) -> None:
    database = await Database.connect(own_server.url, min_size=1, max_size=4)
    hub = EventHub(database)
    await hub.start()
    component = unique("restart")
    try:
        events = aiter(Follower(hub, database, EventFilter(component=component), after=None))
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.3)
        written = await record(database, component, 2)
        received = [(await asyncio.wait_for(pending, TIMEOUT_S))["id"], *await take(events, 1)]
        await asyncio.to_thread(stop_postgres, own_server)
        await asyncio.to_thread(start_postgres, own_server)
        written += await _record_when_back(database, component, 3)
        received += await take(events, 3)
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        await hub.stop()
        await database.close()
    assert received == written


async def _record_when_back(database: Database, component: str, count: int) -> list[uuid.UUID]:
    """Record once the pool's stale connections have been replaced (a restart closes them all)."""
    for _ in range(100):
        try:
            return await record(database, component, count)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, Exception) as error:
            last: Any = error
            await asyncio.sleep(0.1)
    raise AssertionError(f"the database did not come back: {last}")
