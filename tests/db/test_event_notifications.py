"""One NOTIFY per committed statement, naming its events by their stamps; each process reads them once."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db.engine import Database
from db.filters import EventFilter
from db.group_commit import GroupCommitter
from db.idempotency import KeyedEvent, insert_events_once
from db.live_feed import hub as hub_module
from db.live_feed.hub import EventHub
from db.live_feed.notifications import (
    EVENTS_CHANNEL,
    MAX_PAYLOAD_BYTES,
    Announcement,
    decode_announcement,
)
from db.repository import insert_event, insert_events
from db.validation import NewEvent
from tests.db.support import unique

BATCH = 1_000  # the largest batch a request may carry (Settings.max_batch_events)


def new_event(component: str, message: str = "m") -> NewEvent:
    return NewEvent(component, "production", "ade@example.com", message, {"n": 1})


class Listener:
    """A LISTEN connection of the test's own: every payload sent on the events channel."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.payloads: list[str] = []

    def received(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self.payloads.append(payload)

    async def settle(self) -> list[str]:
        """What arrived, once the notifications of every transaction committed so far have."""
        # NOTIFY on our own connection is delivered after everything committed before it.
        marker = f"marker-{uuid.uuid4().hex}"
        await self.connection.execute(f"NOTIFY {EVENTS_CHANNEL}, '{marker}'")
        for _ in range(200):
            if marker in self.payloads:
                break
            await asyncio.sleep(0.01)
        received, self.payloads = [p for p in self.payloads if p != marker], []
        return received


@pytest.fixture
async def listener(database_url: str) -> AsyncIterator[Listener]:
    connection = await asyncpg.connect(database_url)
    listening = Listener(connection)
    await connection.add_listener(EVENTS_CHANNEL, listening.received)
    try:
        await listening.settle()  # nothing from earlier tests
        yield listening
    finally:
        await connection.close()


def assert_announces(payload: str, rows: Sequence[asyncpg.Record]) -> Announcement:
    """`payload` names exactly `rows`: their count, and the first and last stamp."""
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    announcement = decode_announcement(payload)
    assert (announcement.first_at, announcement.last_at, announcement.count) == (
        rows[0]["created_at"],
        rows[-1]["created_at"],
        len(rows),
    )
    return announcement


async def test_a_batch_of_1000_events_sends_one_small_notification(
    database: Database, listener: Listener
) -> None:
    component = unique("batch")
    async with database.single_statement() as connection:
        rows = await insert_events(connection, [new_event(component, str(n)) for n in range(BATCH)])

    [payload] = await listener.settle()
    assert assert_announces(payload, rows).record is None
    assert len(payload.encode()) < 200  # whatever the batch's size


async def test_a_single_event_sends_one_notification_carrying_it(
    database: Database, listener: Listener
) -> None:
    async with database.single_statement() as connection:
        row = await insert_event(connection, new_event(unique("single")))

    [payload] = await listener.settle()
    carried = assert_announces(payload, [row]).record
    assert carried is not None and dict(carried) == dict(row)


async def test_a_single_event_too_large_to_carry_is_announced_by_its_stamp(
    database: Database, listener: Listener
) -> None:
    async with database.single_statement() as connection:
        row = await insert_event(connection, new_event(unique("huge"), "x" * 10_000))

    [payload] = await listener.settle()
    assert assert_announces(payload, [row]).record is None


async def test_a_keyed_batch_sends_one_notification_for_its_new_events(
    database: Database, listener: Listener
) -> None:
    component = unique("keyed")
    # Three keys, each given twice (the repeat stands for the first), and two events without a key.
    items = [KeyedEvent(new_event(component, str(n % 3)), key=f"{component}-{n % 3}") for n in range(6)]
    items += [KeyedEvent(new_event(component, "no key"))] * 2
    async with database.transaction() as connection:
        results = await insert_events_once(connection, items, owner="", window=timedelta(hours=1))

    [payload] = await listener.settle()
    assert_announces(payload, [result.record for result in results if not result.replayed])
    assert decode_announcement(payload).count == 5


async def test_group_commit_sends_one_notification_per_committed_batch(
    database: Database, listener: Listener
) -> None:
    component = unique("group")
    writer = GroupCommitter(database, max_rows=16, max_wait_s=0.2)
    await writer.start()
    try:
        rows = await asyncio.gather(*(writer.record(new_event(component, str(n))) for n in range(64)))
    finally:
        await writer.stop()

    payloads = await listener.settle()
    assert writer.stats.batches_committed == len(payloads) < len(rows)
    announced = [decode_announcement(payload) for payload in payloads]
    assert sum(announcement.count for announcement in announced) == len(rows)
    assert [(a.first_at, a.last_at) for a in announced] == sorted((a.first_at, a.last_at) for a in announced)


async def test_a_rolled_back_batch_sends_nothing(database: Database, listener: Listener) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with database.transaction() as connection:
            await insert_events(connection, [new_event(unique("undone"))] * 10)
            raise Abort()

    assert await listener.settle() == []


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        '{"id": "6d6f9b2e-27f4-4b36-8d43-3f6c0a3e0b7a"}',  # the per-row payload of old
        '{"first": "2026-11-30T01:00:00.000002", "last": "2026-11-30T01:00:00.000001", "count": 2}',
        '{"first": "2026-11-30T01:00:00", "last": "2026-11-30T01:00:00", "count": 0}',
        '{"first": "yesterday", "last": "2026-11-30T01:00:00", "count": 1}',
    ],
)
def test_a_payload_that_is_not_an_announcement_is_refused(payload: str) -> None:
    with pytest.raises(ValueError, match="not an event announcement"):
        decode_announcement(payload)


async def test_the_hub_reads_a_1000_event_batch_once_and_delivers_it_in_order(
    hub: EventHub, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    read = hub_module.get_events_stamped

    async def counting_read(connection: asyncpg.Connection, spans: list[object]) -> list[asyncpg.Record]:
        rows = await read(connection, spans)  # type: ignore[arg-type]
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(hub_module, "get_events_stamped", counting_read)
    component = unique("fanout")
    async with (
        hub.subscribe(EventFilter(component=component)) as first,
        hub.subscribe(EventFilter(component=component)) as second,
    ):
        async with database.single_statement() as connection:
            rows = await insert_events(connection, [new_event(component, str(n)) for n in range(BATCH)])
        for subscription in (first, second):
            received = [await asyncio.wait_for(anext(subscription), 10) for _ in range(BATCH)]
            assert [event["id"] for event in received] == [row["id"] for row in rows]

    assert reads == [BATCH]


async def test_the_hub_reads_nothing_for_events_their_notifications_carry(
    hub: EventHub, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    read = hub_module.get_events_stamped

    async def counting_read(connection: asyncpg.Connection, spans: list[object]) -> list[asyncpg.Record]:
        reads.append(len(spans))
        return await read(connection, spans)  # type: ignore[arg-type]

    monkeypatch.setattr(hub_module, "get_events_stamped", counting_read)
    component = unique("carried")
    async with hub.subscribe(EventFilter(component=component)) as events:
        stored = []
        for message in ("small", "x" * 10_000, "small again"):
            async with database.single_statement() as connection:
                stored.append(await insert_event(connection, new_event(component, message)))
        received = [await asyncio.wait_for(anext(events), 10) for _ in stored]

    assert [dict(event) for event in received] == [dict(row) for row in stored]
    assert reads == [1]  # the oversize one only


def test_a_round_of_large_batches_is_read_in_bounded_parts() -> None:
    moment = datetime(2026, 11, 30, tzinfo=UTC)  # only the counts matter here
    limit = hub_module._MAX_EVENTS_PER_READ
    counts = [1, limit - 1, 1, limit + 5, 3, 3]
    parts = list(hub_module._parts_to_read([Announcement(moment, moment, count) for count in counts]))
    assert [[a.count for a in part] for part in parts] == [[1, limit - 1], [1], [limit + 5], [3, 3]]
    carried = Announcement(moment, moment, 1, record={"id": 1})  # read from no table: not counted
    parts = list(hub_module._parts_to_read([Announcement(moment, moment, limit), carried, carried]))
    assert [len(part) for part in parts] == [3]
