"""The live feed under load: websocket subscribers (graphql-transport-ws) while events are recorded.

The subscribers are the measured receivers, so they are Python (websockets on uvloop), not a load
generator. Each one filters on one component; events cycle through the components, so every event
matches exactly subscribers / len(COMPONENTS) of them. The sender records events through
POST /api/events/ on a fixed schedule (k / rate seconds after the start), on a few keep-alive
connections. The websockets client offers permessage-deflate, as browsers do.

Lag is the subscriber's clock at receipt minus the event's `createdAt` (the server's clock when
the inserting transaction began): both on this machine.
"""

import asyncio
import gc
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import uvloop
import websockets

from tests.benchmarks._database import COMPONENTS
from tests.benchmarks._processes import percentile

SUBSCRIPTION = (
    "subscription Live($component: String!) { eventRecorded(filter: {component: $component}) "
    "{ id component environment email message data createdAt } }"
)
SENDER_CONNECTIONS = 32
CONNECT_CONCURRENCY = 50
_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


@dataclass
class SubscriptionResult:
    subscribers: int
    connected: int
    rate: float
    sent: int
    accepted: int
    send_s: float
    expected: int
    delivered: int
    unexpected: int  # deliveries of events a subscriber's filter does not match, or duplicates
    ended: int  # subscriptions the server ended (error/complete) or sockets that closed
    lags_ms: list[float] = field(default_factory=list)
    sender_late_ms: float = 0.0  # how far the sender fell behind its schedule at worst
    client_cpu: float = 0.0  # cores this process used while sending (the receivers' share of the machine)
    warmup_s: float = 0.0
    first_error: str = ""  # what ended a stream early, for the first one that did

    @property
    def p50_lag_ms(self) -> float:
        return percentile(self.lags_ms, 0.50)

    @property
    def p99_lag_ms(self) -> float:
        return percentile(self.lags_ms, 0.99)


class _Subscriber:
    def __init__(self, index: int, component: str) -> None:
        self.index, self.component = index, component
        self.warm = asyncio.Event()
        # (bench sequence number, received at, createdAt text, component); parsed after the run
        self.received: list[tuple[int, float, str, str]] = []
        self.count = 0
        self.error = ""
        self.ended = False


async def _subscribe(
    url: str, subscriber: _Subscriber, subscribed: asyncio.Semaphore, done: asyncio.Event
) -> None:
    try:
        async with subscribed:
            socket = await websockets.connect(
                url, subprotocols=["graphql-transport-ws"], max_queue=None, open_timeout=30
            )
            await socket.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())
            ack = orjson.loads(await socket.recv())
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"no connection_ack: {ack}")
            payload = {"query": SUBSCRIPTION, "variables": {"component": subscriber.component}}
            await socket.send(orjson.dumps({"id": "1", "type": "subscribe", "payload": payload}).decode())
        async with socket:
            reader = asyncio.ensure_future(_read(socket, subscriber))
            finished = asyncio.ensure_future(done.wait())
            await asyncio.wait([reader, finished], return_when=asyncio.FIRST_COMPLETED)
            finished.cancel()
            if reader.done() and reader.exception() is not None:
                raise RuntimeError(f"unreadable message: {reader.exception()!r}")
            reader.cancel()
    except (OSError, RuntimeError, websockets.WebSocketException) as error:
        subscriber.error = subscriber.error or f"{type(error).__name__}: {error}"[:200]
        subscriber.ended = True


async def _read(socket: Any, subscriber: _Subscriber) -> None:
    async for raw in socket:
        received_at = time.time()
        message = orjson.loads(raw)
        kind = message.get("type")
        if kind == "next" and message["payload"].get("errors"):
            subscriber.error = str(message["payload"]["errors"])[:200]
            subscriber.ended = True
            return
        if kind == "next":
            event = message["payload"]["data"]["eventRecorded"]
            sequence = event["data"].get("bench_seq", -1)
            if sequence < 0:
                subscriber.warm.set()
            else:
                subscriber.received.append((sequence, received_at, event["createdAt"], event["component"]))
                subscriber.count += 1
        elif kind == "ping":
            await socket.send('{"type": "pong"}')
        elif kind in ("error", "complete"):
            subscriber.error = str(message.get("payload", kind))[:200]
            subscriber.ended = True
            return
    subscriber.ended = True


def _event(sequence: int, component: str, rng: random.Random) -> dict[str, Any]:
    user = rng.randrange(10_000)
    return {
        "component": component,
        "data": {"bench_seq": sequence, "attempt": rng.randrange(3)},
        "email": f"user{user}@example.com",
        "environment": "production",
        "message": f"live feed benchmark event {sequence:07d}",
    }


class _Poster:
    """Bare HTTP/1.1 keep-alive POSTs on a few connections: a sender far lighter than an HTTP client
    library, so the receivers and the server get the machine's CPU. Waiting for a free connection
    bounds the requests in flight.
    """

    def __init__(self, base_url: str, connections: int) -> None:
        host_port = urlsplit(base_url)
        self.host, self.port = host_port.hostname or "127.0.0.1", host_port.port or 80
        self.connections = connections
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.connections):
            self.idle.put_nowait(await asyncio.open_connection(self.host, self.port))

    def request(self, event: dict[str, Any]) -> bytes:
        body = orjson.dumps(event)
        head = (
            f"POST /api/events/ HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def post(self, request: bytes) -> int:
        """Send one request; its status (0 when the connection failed, which is then replaced)."""
        reader, writer = await self.idle.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = _CONTENT_LENGTH.search(head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            return int(head[9:12])
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return 0
        finally:
            self.idle.put_nowait((reader, writer))

    async def close(self) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()


async def _measure(base_url: str, subscribers: int, rate: float, duration_s: float) -> SubscriptionResult:
    ws_url = base_url.replace("http://", "ws://") + "/graphql"
    members = [_Subscriber(i, COMPONENTS[i % len(COMPONENTS)]) for i in range(subscribers)]
    done = asyncio.Event()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks = [asyncio.ensure_future(_subscribe(ws_url, member, gate, done)) for member in members]
    rng = random.Random(7)
    poster = _Poster(base_url, SENDER_CONNECTIONS)
    await poster.open()
    # Warm-up: one event per component until every subscriber has seen one, so the measured
    # events go to subscriptions the server has certainly registered.
    warm_started = time.monotonic()
    deadline = warm_started + 60
    while time.monotonic() < deadline:
        cold = {m.component for m in members if not m.warm.is_set() and not m.ended}
        if not cold:
            break
        await asyncio.gather(*(poster.post(poster.request(_event(-1, c, rng))) for c in cold))
        await asyncio.sleep(1.0)

    warmup_s = time.monotonic() - warm_started
    # The receivers are the instrument, and their collector's pauses are not the service's lag:
    # with it running, this loop stalled for up to ~200 ms at a time (the sender fell that far
    # behind its schedule) and the lag p99 at 2,000 subscribers read 217-337 ms; without it, the
    # sender kept within ~50-85 ms and p99 read 131-181 ms (2026-11-30). A real subscriber is a
    # process of its own with one socket, not 2,000 in one heap. Collection resumes after the run.
    gc.collect()
    gc.freeze()
    gc.disable()
    total = round(rate * duration_s)
    requests = [poster.request(_event(k, COMPONENTS[k % len(COMPONENTS)], rng)) for k in range(total)]
    accepted: set[int] = set()
    late = 0.0

    async def send(sequence: int) -> None:
        if await poster.post(requests[sequence]) == 201:
            accepted.add(sequence)

    senders = []
    cpu_started = time.process_time()
    started = time.monotonic()
    for sequence in range(total):
        pause = started + sequence / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        late = max(late, -pause * 1000)
        senders.append(asyncio.ensure_future(send(sequence)))
    await asyncio.gather(*senders)
    send_s = time.monotonic() - started
    client_cpu = (time.process_time() - cpu_started) / send_s if send_s else 0.0
    await poster.close()

    # Every subscriber counts, including any that never connected or warmed up.
    per_component = {c: sum(1 for m in members if m.component == c) for c in COMPONENTS}
    expected = sum(per_component[COMPONENTS[s % len(COMPONENTS)]] for s in accepted)
    # Stragglers get up to 10 s; a cheap counter is polled (an Event per delivery would cost more).
    grace = time.monotonic() + 10
    while sum(m.count for m in members) < expected and time.monotonic() < grace:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    gc.enable()
    gc.unfreeze()

    lags, unexpected = [], 0
    for member in members:
        seen: set[int] = set()
        for sequence, received_at, created_at, component in member.received:
            if sequence in seen or component != member.component:
                unexpected += 1
                continue
            seen.add(sequence)
            lags.append((received_at - datetime.fromisoformat(created_at).timestamp()) * 1000)
    return SubscriptionResult(
        subscribers=subscribers,
        connected=sum(1 for m in members if m.warm.is_set()),
        rate=rate,
        sent=total,
        accepted=len(accepted),
        send_s=send_s,
        expected=expected,
        delivered=sum(len({s for s, *_ in m.received if s in accepted}) for m in members),
        unexpected=unexpected,
        ended=sum(1 for m in members if m.ended),
        lags_ms=lags,
        sender_late_ms=late,
        client_cpu=client_cpu,
        warmup_s=warmup_s,
        first_error=next((m.error for m in members if m.error), ""),
    )


def measure_subscriptions(
    base_url: str, subscribers: int, rate: float, duration_s: float
) -> SubscriptionResult:
    """Connect `subscribers`, record `rate` events/s for `duration_s`, count deliveries and lag."""
    return uvloop.run(_measure(base_url, subscribers, rate, duration_s))
