"""Live subscriptions asking the same thing share one execution (graphql_schema/websockets/shared_streams.py).

Against the real schema, hub and database: equal subscriptions share one stream and one encoded
payload per event, different ones (or one resuming `after` a cursor) run their own. A subscriber
that falls behind leaves the shared stream and resumes on its own after the last event it sent.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing, suppress
from typing import Any

import pytest
from fastapi import FastAPI
from strawberry.types.execution import ExecutionResult

from api.settings import Settings
from db.engine import Database
from db.repository import EventKey
from graphql_schema.context import Context
from graphql_schema.cursors import encode_cursor
from graphql_schema.schema import EventsSchema, build_schema
from graphql_schema.websockets.connections import admitted_results
from graphql_schema.websockets.shared_streams import SharedResult, SharedStreams
from tests.graphql_schema.test_subscription import SUBSCRIPTION, record_directly

TIMEOUT_S = 10.0


def context_of(app: FastAPI) -> Context:
    state = app.state
    return Context(state.database, state.settings, state.key_verifier, state.event_writer, state.event_hub)


@pytest.fixture
def schema(settings: Settings) -> EventsSchema:
    """A schema of the test's own, so no other test's streams are in its registry."""
    schema = build_schema(settings)
    assert schema.shared_streams is not None
    return schema


async def subscribed(
    stack: AsyncExitStack, schema: EventsSchema, app: FastAPI, variables: dict[str, Any]
) -> Any:
    payload = {"query": SUBSCRIPTION, "variables": variables}
    results = await admitted_results(schema, payload, context_of(app))
    return await stack.enter_async_context(aclosing(results))


async def next_result(results: Any) -> Any:
    return await asyncio.wait_for(anext(results), TIMEOUT_S)


async def test_equal_subscriptions_share_one_execution_and_one_payload(
    app: FastAPI, schema: EventsSchema, database: Database
) -> None:
    component = f"shared-{uuid.uuid4().hex[:8]}"
    variables = {"filter": {"component": component}}
    streams = schema.shared_streams
    assert streams is not None
    async with AsyncExitStack() as stack:
        first = await subscribed(stack, schema, app, variables)
        second = await subscribed(stack, schema, app, dict(variables))
        other = await subscribed(stack, schema, app, {"filter": {"component": f"{component}-other"}})
        # The first result is awaited before recording, so the streams are live: retry until so.
        waiting = [asyncio.ensure_future(next_result(r)) for r in (first, second)]
        other_first = asyncio.ensure_future(next_result(other))  # a subscriber joins when it first reads
        for _ in range(50):
            await record_directly(database, component=component, message="probe")
            done, _ = await asyncio.wait(waiting, timeout=0.2, return_when=asyncio.ALL_COMPLETED)
            if len(done) == len(waiting):
                break
        one, two = (task.result() for task in waiting)
        assert isinstance(one, SharedResult) and one is two, "one execution, one result object"
        assert len(streams) == 2  # the equal pair, and the other filter
        # The message an unshared result would be, whatever the encoder's spacing.
        # Twice each: the second time the envelope's opening comes from the cache, which must tell
        # ids, protocols' types and encoders apart.
        envelopes = [{"id": "7", "type": "next"}, {"id": "8", "type": "next"}, {"type": "data", "id": "7"}]
        for _ in range(2):
            for encode in (json.dumps, lambda value: json.dumps(value, separators=(",", ":"))):
                for envelope in envelopes:
                    expected = encode({**envelope, "payload": {"data": one.result.data}})
                    assert one.message(envelope, encode) == expected
        assert one.result.data["eventRecorded"]["component"] == component
        other_first.cancel()
        with suppress(asyncio.CancelledError):
            await other_first
    await asyncio.sleep(0)
    assert len(streams) == 0, "the last subscriber to leave ends the shared execution"


async def test_a_subscription_resuming_after_a_cursor_runs_its_own(
    app: FastAPI, schema: EventsSchema, database: Database
) -> None:
    await record_directly(database, component="resume")
    async with database.transaction() as connection:
        row = await connection.fetchrow("SELECT created_at, id FROM events")
    cursor = encode_cursor(EventKey(row["created_at"], row["id"]))
    query = "subscription($after: String) { eventRecorded(after: $after) { id } }"
    async with AsyncExitStack() as stack:
        results = await admitted_results(
            schema, {"query": query, "variables": {"after": cursor}}, context_of(app)
        )
        await stack.enter_async_context(aclosing(results))
        assert schema.shared_streams is not None and len(schema.shared_streams) == 0


# The fan-out itself, on a source of our own: a slow subscriber resumes on its own stream.


async def test_a_subscriber_that_falls_behind_resumes_alone_after_the_last_event_it_sent(
    app: FastAPI,
) -> None:
    keys = [EventKey(created_at=None, id=uuid.uuid4()) for _ in range(10)]  # type: ignore[arg-type]
    opened: list[EventKey | None] = []
    produce: asyncio.Queue[None] = asyncio.Queue()  # one token per event the shared source yields

    async def open_stream(context: Context) -> AsyncIterator[Any]:
        opened.append(context.resume_after)
        resume_after = context.resume_after

        async def results() -> AsyncIterator[Any]:
            if resume_after is not None:  # the table's catch-up, as a Follower would do it
                for key in keys[keys.index(resume_after) + 1 :]:
                    yield ExecutionResult(data={"resumed": str(key.id)}, errors=None)
                return
            for key in keys:
                await produce.get()
                context.last_event_key = key
                yield ExecutionResult(data={"shared": str(key.id)}, errors=None)
            await asyncio.Event().wait()  # live: nothing more for now

        return results()

    streams = SharedStreams(max_pending=3)
    context = context_of(app)
    fast = streams.results(("k",), context, open_stream)
    slow = streams.results(("k",), context, open_stream)
    first_of_fast = asyncio.ensure_future(next_result(fast))
    first_of_slow = asyncio.ensure_future(next_result(slow))
    await asyncio.sleep(0.05)  # both attached
    produce.put_nowait(None)
    fast_seen, slow_seen = [await first_of_fast], [await first_of_slow]
    for _ in keys[1:]:  # the slow one reads nothing meanwhile: 3 wait for it, then it overflows
        produce.put_nowait(None)
        fast_seen.append(await next_result(fast))
    while len(slow_seen) < len(keys):
        slow_seen.append(await next_result(slow))
    await fast.aclose()
    await slow.aclose()

    def data(result: Any) -> dict[str, Any]:
        return (result.result if isinstance(result, SharedResult) else result).data

    assert [next(iter(data(r).values())) for r in slow_seen] == [str(k.id) for k in keys], "no gap, no repeat"
    assert [next(iter(data(r))) for r in slow_seen] == ["shared"] * 4 + ["resumed"] * 6
    assert all("shared" in data(r) for r in fast_seen)
    assert opened == [None, keys[3]], "one shared source, and one resuming after the 4th event"
    assert len(streams) == 0


def test_shared_subscriptions_can_be_switched_off(settings: Settings) -> None:
    unshared = build_schema(settings.model_copy(update={"graphql_shared_subscriptions": False}))
    assert unshared.shared_streams is None
