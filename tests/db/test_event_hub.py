"""The live feed: recorded events reach matching subscribers, once, in commit order, from any process."""

import asyncio
import logging
import sys
import uuid
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from db.engine import Database
from db.filters import EventFilter, SqlParams, filter_conditions
from db.live_feed.hub import EventHub
from db.live_feed.matching import jsonb_contains, parse_jsonb_text
from db.live_feed.notifications import EventRecord
from db.live_feed.subscription import (
    EventFeedClosed,
    EventFeedInterrupted,
    SubscriberTooSlow,
    Subscription,
)
from db.repository import insert_event, insert_events
from db.validation import NewEvent, parse_event_payload
from tests.support import ROOT, valid_event

RECEIVE_TIMEOUT_S = 10.0


def new_event(**overrides: Any) -> NewEvent:
    return parse_event_payload(valid_event(**overrides))


def unique(prefix: str) -> str:
    """A component no other test uses, so events from other tests can never match."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def record(database: Database, *events: NewEvent) -> list[asyncpg.Record]:
    """Insert `events` in one transaction (one statement); return them as stored."""
    async with database.transaction() as connection:
        if len(events) == 1:
            return [await insert_event(connection, events[0])]
        return await insert_events(connection, events)


async def receive(subscription: Subscription, count: int) -> list[EventRecord]:
    async def take() -> list[EventRecord]:
        return [await anext(subscription) for _ in range(count)]

    return await asyncio.wait_for(take(), RECEIVE_TIMEOUT_S)


async def drain(subscription: Subscription, quiet_s: float = 0.2) -> list[EventRecord]:
    """Whatever the subscription holds, until it stays quiet for `quiet_s`."""
    received: list[EventRecord] = []
    while True:
        try:
            received.append(await asyncio.wait_for(anext(subscription), quiet_s))
        except TimeoutError:
            return received


def ids(records: list[Any]) -> list[uuid.UUID]:
    return [row["id"] for row in records]


async def test_repository_inserts_reach_a_matching_subscriber_in_commit_order(
    hub: EventHub, database: Database
) -> None:
    component = unique("order")
    async with hub.subscribe(EventFilter(component=component)) as events:
        first = await record(database, new_event(component=component, message="one"))
        await record(database, new_event(component=unique("other")))
        batch = await record(
            database,
            new_event(component=component, message="two"),
            new_event(component=unique("other")),
            new_event(component=component, message="three"),
        )
        last = await record(database, new_event(component=component, message="four"))

        received = await receive(events, 4)

    assert ids(received) == ids([*first, batch[0], batch[2], *last])
    assert [row["message"] for row in received] == ["one", "two", "three", "four"]


async def test_a_received_event_has_the_columns_a_query_returns(hub: EventHub, database: Database) -> None:
    component = unique("shape")
    data = {"big": 123456789012345678901234567890, "price": 1.10, "text": 'é\n"q"', "list": [None, True]}
    async with hub.subscribe(EventFilter(component=component)) as events:
        [stored] = await record(database, new_event(component=component, data=data))
        [received] = await receive(events, 1)

    assert dict(received) == dict(stored)
    assert received["created_at"].tzinfo is not None


async def test_rest_post_reaches_the_apps_own_hub(app: FastAPI, client: httpx.AsyncClient) -> None:
    component = unique("rest")
    async with app.state.event_hub.subscribe(EventFilter(component=component)) as events:
        posted = [
            (await client.post("/api/events/", json=valid_event(component=component, message=text))).json()
            for text in ("first", "second")
        ]
        received = await receive(events, 2)

    assert [str(row["id"]) for row in received] == [body["id"] for body in posted]


async def test_oversize_event_arrives_complete_and_in_order(hub: EventHub, database: Database) -> None:
    component = unique("big")
    huge_message = "x" * 10_000  # beyond NOTIFY's 8000-byte payload: only the id travels
    async with hub.subscribe(EventFilter(component=component)) as events:
        small_before = await record(database, new_event(component=component, message="before"))
        huge = await record(database, new_event(component=component, message=huge_message))
        small_after = await record(database, new_event(component=component, message="after"))
        received = await receive(events, 3)

    assert ids(received) == ids([*small_before, *huge, *small_after])
    assert received[1]["message"] == huge_message
    assert dict(received[1]) == dict(huge[0])


async def test_two_subscribers_with_different_filters_each_get_exactly_their_events(
    hub: EventHub, database: Database
) -> None:
    component = unique("pair")
    by_component = EventFilter(component=component)
    by_environment = EventFilter(environment_in=(component + "-env",), message_contains="ALERT")
    async with hub.subscribe(by_component) as first, hub.subscribe(by_environment) as second:
        only_first = await record(database, new_event(component=component, message="alert"))
        only_second = await record(
            database, new_event(component=unique("x"), environment=component + "-env", message="an alert")
        )
        neither = await record(database, new_event(component=unique("x"), environment=component + "-env"))
        both = await record(
            database, new_event(component=component, environment=component + "-env", message="Alert!")
        )
        # `both` is last: once each subscriber has it, anything else would have come before it.
        first_received = await receive(first, 2)
        second_received = await receive(second, 2)

    assert ids(first_received) == ids([*only_first, *both])
    assert ids(second_received) == ids([*only_second, *both])
    assert neither[0]["id"] not in ids(first_received + second_received)


INSERT_FROM_ANOTHER_PROCESS = """
import asyncio, sys
from db.engine import Database
from db.repository import insert_event
from db.validation import NewEvent

async def main(url: str, component: str) -> None:
    database = await Database.connect(url, min_size=1, max_size=1)
    try:
        for message in ("from", "elsewhere"):
            async with database.transaction() as connection:
                event = NewEvent(component, "production", "ade@example.com", message, {"n": 1})
                print((await insert_event(connection, event))["id"], flush=True)
    finally:
        await database.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_events_inserted_by_another_process_arrive(
    hub: EventHub, database_url: str, database: Database
) -> None:
    component = unique("remote")
    async with hub.subscribe(EventFilter(component=component)) as events:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            INSERT_FROM_ANOTHER_PROCESS,
            database_url,
            component,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        received = await receive(events, 2)

    assert [str(event_id) for event_id in ids(received)] == stdout.decode().split()
    assert [row["message"] for row in received] == ["from", "elsewhere"]


async def test_a_rolled_back_insert_never_arrives(hub: EventHub, database: Database) -> None:
    component = unique("rollback")

    class Abort(Exception):
        pass

    async with hub.subscribe(EventFilter(component=component)) as events:
        for how_many in (1, 2):  # a notification that carries its event, and one that names a span
            with pytest.raises(Abort):
                async with database.transaction() as connection:
                    undone = [new_event(component=component, message="undone")] * how_many
                    if how_many == 1:
                        await insert_event(connection, undone[0])
                    else:
                        await insert_events(connection, undone)
                    raise Abort()
        committed = await record(database, new_event(component=component, message="kept"))
        received = await receive(events, 1)
        assert await drain(events) == []

    assert ids(received) == ids(committed)


async def test_a_subscriber_that_falls_behind_ends_with_an_error_after_its_queued_events(
    database: Database,
) -> None:
    component = unique("slow")
    hub = EventHub(database, max_pending_events=3)
    await hub.start()
    try:
        async with hub.subscribe(EventFilter(component=component)) as events:
            stored = await record(
                database, *[new_event(component=component, message=str(n)) for n in range(5)]
            )
            # Not reading yet: the dispatcher must find the queue full on the fourth event.
            for _ in range(200):
                if events.ended:
                    break
                await asyncio.sleep(0.05)
            received = await receive(events, 3)
            with pytest.raises(SubscriberTooSlow, match="more than 3 events"):
                await anext(events)
    finally:
        await hub.stop()

    assert ids(received) == ids(stored[:3])


async def test_a_lost_listen_connection_ends_subscriptions_and_the_hub_reconnects(
    hub: EventHub, database: Database, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    component = unique("reconnect")
    caplog.set_level(logging.INFO, logger="db.live_feed.hub")
    async with hub.subscribe(EventFilter(component=component)) as events:
        before = await record(database, new_event(component=component))
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", hub.listener_pid)
        finally:
            await admin.close()
        # What arrived before the loss is delivered, then the subscription reports the gap.
        assert ids(await receive(events, 1)) == ids(before)
        with pytest.raises(EventFeedInterrupted, match="lost its database connection"):
            await asyncio.wait_for(anext(events), RECEIVE_TIMEOUT_S)

    for _ in range(200):
        if hub.is_listening:
            break
        await asyncio.sleep(0.05)
    async with hub.subscribe(EventFilter(component=component)) as events:
        after = await record(database, new_event(component=component))
        assert ids(await receive(events, 1)) == ids(after)
    assert "lost the LISTEN connection" in caplog.text
    assert "listening again" in caplog.text


async def test_stopping_the_hub_ends_subscriptions_with_feed_closed(database: Database) -> None:
    hub = EventHub(database)
    await hub.start()
    async with hub.subscribe(EventFilter()) as events:
        await hub.stop()
        with pytest.raises(EventFeedClosed):
            await asyncio.wait_for(anext(events), RECEIVE_TIMEOUT_S)
    with pytest.raises(EventFeedClosed):
        async with hub.subscribe(EventFilter()):
            pass


# Each case: container, contained, as JSON text. PostgreSQL's @> is the judge.
JSONB_CONTAINMENT_CASES = [
    ('{"a": 1, "b": 2}', '{"a": 1}'),
    ('{"a": 1}', '{"a": 1, "b": 2}'),
    ('{"a": 1}', "{}"),
    ("{}", "{}"),
    ('{"a": 1}', '{"a": 1.0}'),
    ('{"a": 1.50}', '{"a": 1.5}'),
    ('{"a": 0.1}', '{"a": 0.10000000000000001}'),
    ('{"a": 123456789012345678901234567890}', '{"a": 123456789012345678901234567890}'),
    ('{"a": 123456789012345678901234567890}', '{"a": 123456789012345678901234567891}'),
    ('{"a": 1e2}', '{"a": 100}'),
    ('{"a": true}', '{"a": 1}'),
    ('{"a": 1}', '{"a": true}'),
    ('{"a": false}', '{"a": 0}'),
    ('{"a": null}', '{"a": null}'),
    ('{"a": null}', '{"a": false}'),
    ('{"a": "1"}', '{"a": 1}'),
    ('{"a": "x"}', '{"a": "X"}'),
    ('{"a": "\\u00e9"}', '{"a": "é"}'),
    ('{"a": {"b": {"c": 1, "d": 2}}}', '{"a": {"b": {"c": 1}}}'),
    ('{"a": {"b": 1}}', '{"a": {}}'),
    ('{"a": {"b": 1}}', '{"b": 1}'),
    ('{"a": [1, 2, 3]}', '{"a": [3, 1]}'),
    ('{"a": [1, 2, 3]}', '{"a": [1, 1, 1]}'),
    ('{"a": [1, 2, 3]}', '{"a": []}'),
    ('{"a": [1, 2, 3]}', '{"a": [4]}'),
    ('{"a": [1, 2, 3]}', '{"a": 1}'),
    ('{"a": 1}', '{"a": [1]}'),
    ('{"a": []}', '{"a": {}}'),
    ('{"a": {}}', '{"a": []}'),
    ('{"a": [[1, 2], [3]]}', '{"a": [[2]]}'),
    ('{"a": [[1, 2], [3]]}', '{"a": [[1, 3]]}'),
    ('{"a": [[1, 2], [3]]}', '{"a": [1]}'),
    ('{"a": [1]}', '{"a": [[1]]}'),
    ('{"a": [{"b": 1, "c": 2}, {"d": 3}]}', '{"a": [{"b": 1}]}'),
    ('{"a": [{"b": 1, "c": 2}, {"d": 3}]}', '{"a": [{"b": 1, "d": 3}]}'),
    ('{"a": [{"b": 1}, {"d": 3}]}', '{"a": [{"d": 3}, {"b": 1}]}'),
    ('{"a": [{"b": [1, 2]}]}', '{"a": [{"b": [2]}]}'),
    ('{"a": [{"b": 1}]}', '{"a": [[]]}'),
    ('{"a": [[]]}', '{"a": [{}]}'),
    ('{"a": [{}]}', '{"a": [{}]}'),
    ('{"a": ["x", {"b": 1}]}', '{"a": ["x", {}]}'),
    ('{"a": 1, "a": 2}', '{"a": 2}'),
    ('{"a": 1, "a": 2}', '{"a": 1}'),
    # Top level beyond objects: PostgreSQL stores a scalar as a one-element array.
    ('[1, 2, "x"]', '"x"'),
    ('[1, 2, "x"]', "2"),
    ("[1, 2]", "[2]"),
    ('"x"', '"x"'),
    ('"x"', '["x"]'),
    ("[1]", '{"a": 1}'),
    ('{"a": 1}', "[]"),
    ("null", "null"),
    ("[null]", "null"),
    ("[[1]]", "1"),
    ("[]", "[]"),
]


async def test_jsonb_containment_in_python_agrees_with_postgresql(database: Database) -> None:
    async with database.pool.acquire() as connection:
        expected = await connection.fetch(
            "SELECT c::jsonb @> d::jsonb AS contains FROM unnest($1::text[], $2::text[]) AS t(c, d)",
            [container for container, _ in JSONB_CONTAINMENT_CASES],
            [contained for _, contained in JSONB_CONTAINMENT_CASES],
        )
    disagreements = [
        (container, contained, row["contains"])
        for (container, contained), row in zip(JSONB_CONTAINMENT_CASES, expected, strict=True)
        if jsonb_contains(parse_jsonb_text(container), parse_jsonb_text(contained)) != row["contains"]
    ]
    assert disagreements == []
    assert {row["contains"] for row in expected} == {True, False}  # the table tests both outcomes


def filters_to_compare(middle: datetime) -> list[EventFilter]:
    return [
        EventFilter(),
        EventFilter(component="order"),
        EventFilter(environment="production", email="a@example.com"),
        EventFilter(component_in=("order", "auth")),
        EventFilter(component_in=()),
        EventFilter(environment_in=("staging", "dev")),
        EventFilter(message_substring="FAILED"),
        EventFilter(message_substring="failed"),
        EventFilter(message_substring="%_"),
        EventFilter(message_substring=""),
        EventFilter(message_contains="failed"),
        EventFilter(message_contains="kelvin"),  # PostgreSQL lowers İ to i; Python to i + dot
        EventFilter(message_contains="\u212a"),  # KELVIN SIGN: lower() is k in PostgreSQL
        EventFilter(message_contains="STRASSE"),
        EventFilter(message_contains="É"),
        EventFilter(search="failed"),
        EventFilter(search='"order shipped"'),
        EventFilter(search="failed -payment"),
        EventFilter(search="shipped or twice"),
        EventFilter(search=""),
        EventFilter(created_from=middle),
        EventFilter(created_to=middle),
        EventFilter(created_from=middle.replace(tzinfo=None)),  # naive: local time, as asyncpg sends it
        EventFilter(data_contains={"amount": 10}),
        EventFilter(data_contains={"tags": ["eu"]}),
        EventFilter(data_contains={"tags": "eu"}),
        EventFilter(data_contains={"nested": {"k": 1.5}}),
        EventFilter(data_contains={"list": [[3]]}),
        EventFilter(data_contains={"list": [{"a": 1}]}),
        EventFilter(data_contains={"flag": 1}),
        EventFilter(data_contains={"flag": True}),
        EventFilter(data_contains={"n": None}),
        EventFilter(data_contains={}),
        EventFilter(component="order", search="shipped", data_contains={"amount": 10}),
        EventFilter(message_contains="failed", search="login"),
    ]


@pytest.mark.slow  # sweeps every filter field through a live feed (the full run's job)
async def test_every_filter_field_selects_the_same_events_live_as_in_sql(
    hub: EventHub, database: Database
) -> None:
    early = [
        new_event(component="billing", email="a@example.com", message="Payment FAILED for order 42",
                  data={"amount": 10, "tags": ["vip", "eu"], "nested": {"k": 1.50}}),
        new_event(component="order", environment="staging", message="order shipped",
                  data={"amount": 10.0, "tags": ["us"], "flag": True}),
        new_event(component="İstanbul", environment="dev", message="KELVİN \u212a and straße",
                  data={"big": 123456789012345678901234567890}),
    ]  # fmt: skip
    late = [
        new_event(component="auth", environment="dev", message="login failed twice",
                  data={"n": None, "list": [1, [2, 3], {"a": 1}]}),
        new_event(component="order", email="a@example.com", message="100%_done, Élan",
                  data={"amount": 10, "flag": 1}),
    ]  # fmt: skip
    # A moment after the early events and before the late ones (the database's clock decides).
    async with database.pool.acquire() as connection:
        middle = await connection.fetchval("SELECT now() + interval '1 second'")
    filters = filters_to_compare(middle)
    async with AsyncExitStack() as stack:
        all_events = await stack.enter_async_context(hub.subscribe(EventFilter()))
        subscriptions = [await stack.enter_async_context(hub.subscribe(f)) for f in filters]
        for event in early:
            await record(database, event)
        async with database.pool.acquire() as connection:
            await connection.execute("SELECT pg_sleep_until($1)", middle)
        await record(database, *late)
        committed = ids(await receive(all_events, len(early) + len(late)))
        # Each round is offered to every subscriber before any of them wakes, so by now every
        # subscription holds all it will ever get.
        live = [ids(await drain(events, 0.05)) for events in subscriptions]

    disagreements = []
    async with database.pool.acquire() as connection:
        for event_filter, received in zip(filters, live, strict=True):
            params = SqlParams()
            conditions = filter_conditions(event_filter, params)
            where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
            in_sql = {
                row["id"] for row in await connection.fetch(f"SELECT id FROM events {where}", *params.values)
            }
            expected_order = [event_id for event_id in committed if event_id in in_sql]
            if received != expected_order:
                disagreements.append((event_filter, len(received), len(expected_order)))
    assert disagreements == []
    selected_counts = {len(received) for received in live}
    assert 0 in selected_counts and len(committed) in selected_counts and len(selected_counts) > 2
