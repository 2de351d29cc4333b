"""The live feed: one LISTEN connection per process, each recorded event fanned out in-process.

Every inserting statement announces its events with one notification on the `events_recorded`
channel (db.live_feed.notifications); PostgreSQL delivers them at commit, in commit order, to every
listening process. A process holds one connection for that, whatever its number of subscribers,
reads the announced events back once (one query for the notifications it handles together), and
hands each event to the subscribers whose filter matches, in the order the notifications arrived.

A subscriber is never silently skipped: when it falls too far behind, or when the LISTEN
connection drops (events committed meanwhile never reach this process), its subscription ends with
an error after the events it already has. db.live_feed.follow turns that into latency: it catches up
from the table and subscribes again.
"""

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import asyncpg

from db.engine import CONNECTION_ERRORS, Database, DatabaseUnavailable
from db.filters import EventFilter
from db.live_feed.matching import (
    CandidateEvent,
    CompiledFilter,
    TextQuestion,
    answer_text_questions,
    ascii_lower_is_faithful,
)
from db.live_feed.notifications import (
    EVENTS_CHANNEL,
    Announcement,
    EventRecord,
    as_event_record,
    decode_announcement,
)
from db.live_feed.subscription import (
    EventFeedClosed,
    EventFeedInterrupted,
    EventFeedUnavailable,
    SubscriberTooSlow,
    Subscription,
    SubscriptionEnded,
)
from db.repository import get_events_stamped
from db.urls import as_libpq_url

log = logging.getLogger(__name__)

# Events a subscriber may have waiting before its subscription is ended as too slow: at 200
# events/s, five seconds of backlog. A constructor argument for callers that need another bound.
DEFAULT_MAX_PENDING_EVENTS = 1_000

# Notifications handled in one round: the events they announce and the text-search questions about
# them are read and answered with one query each, so a burst costs a few round trips, not one per
# notification.
_MAX_ROUND = 500
# Announced events read with one query, at most (unless one statement announced more): a round of
# large batches is read and fanned out in parts, so memory holds one part, not the whole round.
_MAX_EVENTS_PER_READ = 2_000

_DATABASE_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.PostgresError)


@dataclass(frozen=True, slots=True)
class _ConnectionLost:
    """Inbox marker: subscriptions of this connection generation or older must end."""

    generation: int
    reason: str


_CLOSE = object()  # inbox marker: the hub is stopping


class EventHub:
    """The process's single LISTEN connection and its subscribers. `start()` before use."""

    def __init__(
        self,
        database: Database,
        *,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
        reconnect_delay_s: float = 0.1,
        max_reconnect_delay_s: float = 10.0,
        health_check_interval_s: float = 1.0,
        health_check_timeout_s: float = 2.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._database = database
        self._max_pending_events = max_pending_events
        self._reconnect_delay_s = reconnect_delay_s
        self._max_reconnect_delay_s = max_reconnect_delay_s
        # A closed connection is noticed at once (asyncpg's termination callback); a silent one by
        # a probe after this long without notifications: followers resume within seconds.
        self._health_check_interval_s = health_check_interval_s
        self._health_check_timeout_s = health_check_timeout_s
        self._connect_timeout_s = connect_timeout_s
        # A dict, not a set: fan-out order is subscription order, which keeps runs reproducible.
        self._subscriptions: dict[Subscription, None] = {}
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._connection: asyncpg.Connection | None = None
        self._connection_lost = asyncio.Event()
        self._listening = asyncio.Event()  # set while a LISTEN connection is up
        self._last_notification_at = 0.0  # time.monotonic() of the latest NOTIFY received
        self._generation = 0
        self._ascii_lower_is_faithful = True
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        # Told (events, seconds since the oldest was stamped) for each round fanned out: api.metrics.
        self.on_round: Callable[[int, float], None] | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def is_listening(self) -> bool:
        return self._connection is not None and not self._stopping

    async def wait_listening(self, timeout_s: float) -> bool:
        """Wait until the feed listens (again); False if it does not within `timeout_s` or is stopping."""
        try:
            await asyncio.wait_for(self._listening.wait(), timeout_s)
        except TimeoutError:
            return False
        return not self._stopping

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions in this process."""
        return len(self._subscriptions)

    @property
    def listener_pid(self) -> int | None:
        """The server process id of the LISTEN connection (for operators and tests)."""
        return self._connection.get_server_pid() if self._connection is not None else None

    async def start(self) -> None:
        """LISTEN (raising DatabaseUnavailable if the first attempt fails) and start fanning out."""
        await self._connect()
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="event-hub-dispatch")
        self._supervisor = asyncio.create_task(self._supervise_forever(), name="event-hub-listen")

    async def stop(self) -> None:
        """Stop listening, deliver what already arrived, end every subscription with EventFeedClosed."""
        if self._stopping:
            return
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with suppress(asyncio.CancelledError):
                await self._supervisor
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                await connection.close(timeout=2)
            except _DATABASE_ERRORS:
                connection.terminate()
        self._inbox.put_nowait(_CLOSE)
        self._listening.set()  # wakes followers waiting to resume: they learn the feed is closing
        if self._dispatcher is not None:
            try:
                await asyncio.wait_for(self._dispatcher, timeout=5)
            except TimeoutError:
                log.warning("event feed: dispatch did not finish within 5 s of shutdown")
        self._end_subscriptions(self._subscriptions, EventFeedClosed("the server is shutting down"))

    @asynccontextmanager
    async def subscribe(self, event_filter: EventFilter) -> AsyncIterator[Subscription]:
        """Events recorded from now on that match `event_filter`, in commit order.

        Raises EventFeedUnavailable at once while the feed is reconnecting: a subscription that
        began then could not tell which events it missed.
        """
        if self._stopping:
            raise EventFeedClosed("the server is shutting down")
        if not self.is_listening:
            raise EventFeedUnavailable("the live event feed is reconnecting to the database; retry shortly")
        compiled = CompiledFilter(event_filter, ascii_lower_is_faithful=self._ascii_lower_is_faithful)
        subscription = Subscription(compiled, self._max_pending_events, self._generation)
        self._subscriptions[subscription] = None
        try:
            yield subscription
        finally:
            self._subscriptions.pop(subscription, None)

    # --- the LISTEN connection ---

    async def _connect(self) -> None:
        try:
            connection = await asyncpg.connect(
                as_libpq_url(self._database.direct_url),  # LISTEN needs a session: never a transaction pooler
                timeout=self._connect_timeout_s,
                server_settings={"application_name": "activity-service-event-feed"},
            )
        except _DATABASE_ERRORS as error:
            raise DatabaseUnavailable(str(error) or type(error).__name__) from error
        try:
            self._ascii_lower_is_faithful = await ascii_lower_is_faithful(connection)
            await connection.add_listener(EVENTS_CHANNEL, self._on_notification)
        except BaseException as error:
            connection.terminate()  # also when cancelled by stop(): no half-set-up connection leaks
            if isinstance(error, _DATABASE_ERRORS):
                raise DatabaseUnavailable(str(error) or type(error).__name__) from error
            raise
        connection.add_termination_listener(self._on_connection_closed)
        self._connection_lost.clear()
        self._generation += 1
        self._connection = connection
        self._listening.set()

    def _on_notification(
        self, _connection: asyncpg.Connection, _pid: int, _channel: str, payload: str
    ) -> None:
        self._last_notification_at = time.monotonic()
        self._inbox.put_nowait(payload)

    def _on_connection_closed(self, connection: asyncpg.Connection) -> None:
        if connection is self._connection:
            self._connection_lost.set()

    async def _supervise_forever(self) -> None:
        """Notice a dead LISTEN connection (closed, or silent on a health check) and replace it."""
        delay = self._reconnect_delay_s
        while True:
            if self._connection is None:
                try:
                    await self._connect()
                except DatabaseUnavailable as error:
                    # Jitter, so the workers of a fleet do not reconnect in lockstep.
                    pause = delay * random.uniform(0.5, 1.0)
                    log.warning("event feed: cannot LISTEN (%s); retrying in %.1f s", error, pause)
                    await asyncio.sleep(pause)
                    delay = min(delay * 2, self._max_reconnect_delay_s)
                    continue
                log.info("event feed: listening again")
                delay = self._reconnect_delay_s
            try:
                reason = await self._wait_for_loss()
            except Exception as error:
                # A bug must not leave the process deaf for good: start over with a new connection.
                log.exception("event feed: unexpected error while watching the LISTEN connection")
                reason = f"unexpected {type(error).__name__}"
            self._drop_connection(reason)

    async def _wait_for_loss(self) -> str:
        connection = self._connection
        assert connection is not None
        while True:
            try:
                await asyncio.wait_for(self._connection_lost.wait(), self._health_check_interval_s)
                return "the connection closed"
            except TimeoutError:
                pass
            if time.monotonic() - self._last_notification_at < self._health_check_interval_s:
                # Notifications arrived meanwhile: the connection is plainly alive. A probe now
                # would queue behind their processing, and under a write burst on a busy worker
                # could time out and end every live subscription for nothing.
                continue
            try:
                await connection.fetchval("SELECT 1", timeout=self._health_check_timeout_s)
            except _DATABASE_ERRORS as error:
                return f"health check failed: {error or type(error).__name__}"

    def _drop_connection(self, reason: str) -> None:
        connection, self._connection = self._connection, None
        self._listening.clear()
        log.warning(
            "event feed: lost the LISTEN connection (%s); ending live subscriptions and reconnecting", reason
        )
        # Queued behind the notifications already received, so those are still delivered first.
        self._inbox.put_nowait(_ConnectionLost(self._generation, reason))
        if connection is not None:
            connection.terminate()

    # --- fan-out ---

    async def _dispatch_forever(self) -> None:
        while True:
            round_ = [await self._inbox.get()]
            while len(round_) < _MAX_ROUND and not self._inbox.empty():
                round_.append(self._inbox.get_nowait())
            payloads: list[str] = []
            for item in round_:
                if isinstance(item, str):
                    payloads.append(item)
                    continue
                await self._deliver_safely(payloads)
                payloads = []
                if item is _CLOSE:
                    return
                if isinstance(item, _ConnectionLost):
                    self._end_subscriptions(
                        [s for s in self._subscriptions if s.generation <= item.generation],
                        EventFeedInterrupted(
                            f"the live event feed lost its database connection ({item.reason}); "
                            "events recorded meanwhile may be missing: query them, then resubscribe"
                        ),
                    )
            await self._deliver_safely(payloads)

    async def _deliver_safely(self, payloads: list[str]) -> None:
        if not payloads:
            return
        try:
            await self._deliver(payloads)
        except Exception:
            # A bug here must not silently stall the feed: everyone learns their stream broke.
            log.exception("event feed: could not fan out %d notifications", len(payloads))
            self._end_subscriptions(
                self._subscriptions, EventFeedInterrupted("the live event feed failed; resubscribe")
            )

    async def _deliver(self, payloads: list[str]) -> None:
        if all(s.ended for s in self._subscriptions):
            return  # nobody listening in this process: not even worth decoding the payloads
        for part in _parts_to_read(_decode(payloads)):
            subscribers = [s for s in self._subscriptions if not s.ended]
            if not subscribers:
                return
            records = await self._records(part)
            if records:
                await self._fan_out(records, subscribers)
                if self.on_round is not None:
                    self.on_round(len(records), time.time() - records[0]["created_at"].timestamp())

    async def _fan_out(self, records: list[EventRecord], subscribers: list[Subscription]) -> None:
        # First every predicate Python decides; then one query for those only PostgreSQL can.
        plan: list[tuple[EventRecord, list[tuple[Subscription, list[int]]]]] = []
        questions: dict[tuple[str, TextQuestion], int] = {}
        for record in records:
            event = CandidateEvent(record)
            matched: list[tuple[Subscription, list[int]]] = []
            for subscription in subscribers:
                if subscription.filter.matches_locally(event):
                    asks = [
                        questions.setdefault((record[question.condition.column], question), len(questions))
                        for question in subscription.filter.text_questions(event)
                    ]
                    matched.append((subscription, asks))
            plan.append((record, matched))
        answers = await self._answer(list(questions), plan) if questions else []
        for record, matched in plan:
            for subscription, asks in matched:
                if subscription.ended or not all(answers[index] for index in asks):
                    continue
                if not subscription.offer(record):
                    self._end_subscriptions(
                        [subscription],
                        SubscriberTooSlow(
                            f"more than {self._max_pending_events} events were waiting for this "
                            "subscriber; it ended after the last event delivered: query the rest, "
                            "then resubscribe"
                        ),
                    )

    async def _records(self, announcements: list[Announcement]) -> list[EventRecord]:
        """The announced events in notification order: those not carried along read with one query."""
        spans = [(a.first_at, a.last_at) for a in announcements if a.record is None]
        rows: list[asyncpg.Record] = []
        if spans:
            try:
                async with self._read_connection() as connection:
                    rows = await get_events_stamped(connection, spans)
            except _DATABASE_ERRORS as error:
                # Without the events no filter can be evaluated: nobody may silently miss them.
                self._end_subscriptions(
                    self._subscriptions,
                    EventFeedInterrupted(f"the live event feed could not read events ({error})"),
                )
                return []
        records: list[EventRecord] = []
        read = 0
        for announcement in announcements:
            if announcement.record is not None:
                records.append(announcement.record)
                continue
            # Rows come span after span, and no two statements' spans overlap (db.event_clock): a
            # span's events are the run of rows stamped within it.
            first = read
            while read < len(rows) and _within(rows[read], announcement):
                records.append(as_event_record(rows[read]))
                read += 1
            if (deleted := announcement.count - (read - first)) > 0:
                log.info("event feed: %d events were deleted before they could be read", deleted)
        # Unreachable while spans never overlap; were they to, an event is still never dropped.
        records.extend(as_event_record(row) for row in rows[read:])
        return records

    async def _answer(
        self,
        questions: list[tuple[str, TextQuestion]],
        plan: list[tuple[EventRecord, list[tuple[Subscription, list[int]]]]],
    ) -> list[bool]:
        try:
            async with self._read_connection() as connection:
                return await answer_text_questions(connection, questions)
        except _DATABASE_ERRORS as error:
            asking = {subscription for _, matched in plan for subscription, asks in matched if asks}
            self._end_subscriptions(
                asking, EventFeedInterrupted(f"the live event feed could not match an event ({error})")
            )
            return [False] * len(questions)

    @asynccontextmanager
    async def _read_connection(self) -> AsyncIterator[asyncpg.Connection]:
        # No transaction (one read needs none) and a bounded wait: a pool exhausted by requests
        # must not stall every subscriber's feed indefinitely.
        async with self._database.connections.connection(self._database.acquire_timeout_s) as connection:
            yield connection

    def _end_subscriptions(self, subscriptions: Iterable[Subscription], reason: SubscriptionEnded) -> None:
        for subscription in list(subscriptions):
            subscription.finish(reason)
            self._subscriptions.pop(subscription, None)


def _decode(payloads: list[str]) -> list[Announcement]:
    announcements = []
    for payload in payloads:
        try:
            announcements.append(decode_announcement(payload))
        except ValueError:
            log.error("event feed: ignoring a foreign notification: %.200r", payload)
    return announcements


def _within(row: asyncpg.Record, announcement: Announcement) -> bool:
    return announcement.first_at <= row["created_at"] <= announcement.last_at


def _parts_to_read(announcements: list[Announcement]) -> Iterator[list[Announcement]]:
    """The announcements in order, in parts of at most _MAX_EVENTS_PER_READ events to read (or one)."""
    part: list[Announcement] = []
    events = 0
    for announcement in announcements:
        to_read = 0 if announcement.record is not None else announcement.count
        if part and events + to_read > _MAX_EVENTS_PER_READ:
            yield part
            part, events = [], 0
        part.append(announcement)
        events += to_read
    if part:
        yield part
