"""Live subscriptions that ask the same thing share one execution, and each event is encoded once.

Subscribers whose (document, operation, variables, API key) are equal, and that follow the live
feed from now on (no `after`), get their results from one `_SharedStream`: one Follower, one filter
match and one execution of the selection per event, one JSON encoding of its payload, and then, per
subscriber, a queue append and a socket write.

A subscriber that falls more than `max_pending` results behind leaves the shared stream without
losing anything: once it has sent what it holds, it continues on a stream of its own that resumes
after the last event it sent (the Follower catches up from the table, then goes live), exactly as
an unshared subscriber that falls behind does.
"""

import asyncio
import copy
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, suppress
from typing import Any

from strawberry.types.execution import ExecutionResult

from db.json_text import canonical_json
from db.repository import EventKey
from graphql_schema.context import Context

# Opens a subscription's results with this context (Strawberry's `schema.stream`).
OpenStream = Callable[[Context], Any]


class SharedResult:
    """One result of a shared stream: every subscriber sends the same payload text."""

    __slots__ = ("_payloads", "event_key", "result")

    def __init__(self, result: ExecutionResult, event_key: EventKey | None) -> None:
        self.result = result
        self.event_key = event_key
        self._payloads: dict[object, str] = {}  # by encoder (one per process in practice)

    def message(self, envelope: dict[str, Any], encode: Callable[[object], str | bytes]) -> str:
        """The message `envelope` (id, type) with this result as its payload, as `encode` writes it.

        Byte for byte what Strawberry's handlers send for an unshared result: `encode` of the whole
        message, with the payload's text encoded once for all subscribers.
        """
        encoder = getattr(encode, "__func__", encode)  # a view's bound method is new on each access
        payload = self._payloads.get(encoder)
        if payload is None:
            payload = self._payloads[encoder] = _text(encode(payload_of(self.result)))
        key = (encoder, *envelope.items())
        opening = _OPENINGS.get(key)
        if opening is None:
            shell = _text(encode({**envelope, "payload": None}))
            assert shell.endswith("null}")
            if len(_OPENINGS) >= _KEPT_OPENINGS:
                _OPENINGS.clear()
            opening = _OPENINGS[key] = shell[: -len("null}")]
        return opening + payload + "}"


# A message's text up to its payload, by (encoder, envelope items): the same for every result an
# operation sends, so encoded once per operation rather than once per delivery (~5 µs of each with
# the standard library's json). Bounded: operation ids are the clients' to choose.
_OPENINGS: dict[tuple[object, ...], str] = {}
_KEPT_OPENINGS = 8192


def payload_of(result: ExecutionResult) -> dict[str, Any]:
    """A result as both protocols put it in a message (Strawberry's own order of keys)."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return payload


def _text(encoded: str | bytes) -> str:
    return encoded.decode() if isinstance(encoded, bytes) else encoded


class _Subscriber:
    def __init__(self, max_pending: int) -> None:
        self.pending: deque[Any] = deque()
        self.max_pending = max_pending
        self.wakeup = asyncio.Event()
        self.overflowed = False
        self.ended = False
        self.error: BaseException | None = None

    def offer(self, result: Any) -> None:
        if self.overflowed:
            return
        if len(self.pending) >= self.max_pending:
            self.overflowed = True  # it will resume on a stream of its own
        else:
            self.pending.append(result)
        self.wakeup.set()

    def end(self, error: BaseException | None = None) -> None:
        self.ended = True
        self.error = error
        self.wakeup.set()


class _SharedStream:
    """One execution of a subscription, fanned out to every subscriber attached."""

    def __init__(
        self, key: tuple[object, ...], context: Context, source: AsyncIterator[Any], owner: "SharedStreams"
    ):
        self.key = key
        self.context = context
        self.source = source
        self.owner = owner
        self.subscribers: set[_Subscriber] = set()
        self.task = asyncio.create_task(self._pump(), name="shared-subscription")

    async def _pump(self) -> None:
        error: BaseException | None = None
        try:
            async with aclosing(self.source):  # type: ignore[type-var]
                async for result in self.source:
                    # Only plain results are shared as text; anything else passes as it came.
                    shared = (
                        SharedResult(result, self.context.last_event_key)
                        if type(result) is ExecutionResult
                        else result
                    )
                    for subscriber in self.subscribers:
                        subscriber.offer(shared)
        except Exception as failure:  # handed to each subscriber, whose transport reports it
            error = failure
        finally:
            self.owner._forget(self)
            for subscriber in self.subscribers:
                subscriber.end(error)

    def detach(self, subscriber: _Subscriber) -> None:
        self.subscribers.discard(subscriber)
        if not self.subscribers:
            self.owner._forget(self)
            self.task.cancel()


class SharedStreams:
    """The shared streams of one process, by what their subscribers asked."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._streams: dict[tuple[object, ...], _SharedStream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    async def results(
        self,
        key: tuple[object, ...],
        context: Context,
        open_stream: OpenStream,
    ) -> AsyncGenerator[Any, None]:
        """This subscriber's results: shared ones (SharedResult), then, had it fallen behind, its own."""
        stream = self._streams.get(key)
        if stream is None:
            # A context of the stream's own: it outlives the subscriber that opened it.
            own = copy.copy(context)
            stream = _SharedStream(key, own, await open_stream(own), self)
            self._streams[key] = stream
        subscriber = _Subscriber(self.max_pending)
        stream.subscribers.add(subscriber)
        last_sent: EventKey | None = None
        try:
            while True:
                if subscriber.pending:
                    result = subscriber.pending.popleft()
                    yield result
                    if isinstance(result, SharedResult) and result.event_key is not None:
                        last_sent = result.event_key
                    continue
                if subscriber.overflowed:
                    break
                if subscriber.ended:
                    if subscriber.error is not None:
                        raise subscriber.error
                    return
                subscriber.wakeup.clear()
                await subscriber.wakeup.wait()
        finally:
            stream.detach(subscriber)
        # Fallen behind: on its own from the last event it sent, as an unshared subscriber would.
        own = copy.copy(context)
        own.resume_after = last_sent
        async with aclosing(await open_stream(own)) as results:
            async for result in results:
                yield result

    def _forget(self, stream: _SharedStream) -> None:
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]

    async def close(self) -> None:
        for stream in list(self._streams.values()):
            stream.task.cancel()
            with suppress(asyncio.CancelledError):
                await stream.task


def share_key(
    query: str, operation_name: str | None, variables: object, context: Context
) -> tuple[object, ...]:
    """What must be equal for two subscriptions to share an execution: the operation and its inputs,
    and the API key (its scopes decided what the gate admitted; its revocation ends the stream)."""
    return (query, operation_name, canonical_json(variables), context.api_key_id)
