"""One subscriber's side of the live feed: a bounded queue read as an async iterator, and why it ends."""

import asyncio
from collections import deque

from db.live_feed.matching import CompiledFilter
from db.live_feed.notifications import EventRecord


class SubscriptionEnded(Exception):
    """The subscription cannot continue; the events received before it are complete and in order."""


class SubscriberTooSlow(SubscriptionEnded):
    """The subscriber let more than its queue's worth of events pile up."""


class EventFeedInterrupted(SubscriptionEnded):
    """The database connection carrying the feed failed; events may have been committed unseen."""


class EventFeedClosed(SubscriptionEnded):
    """The process is shutting down."""


class AccessRevoked(SubscriptionEnded):
    """The subscriber's API key was revoked (or lost the scope the subscription needs)."""


class EventFeedUnavailable(SubscriptionEnded):
    """The feed is not listening right now (reconnecting to the database); try again shortly."""


class Subscription:
    """Events matching one filter, as an async iterator; raises a SubscriptionEnded to stop."""

    def __init__(self, event_filter: CompiledFilter, max_pending: int, generation: int) -> None:
        self.filter = event_filter
        self.generation = generation
        self._max_pending = max_pending
        self._pending: deque[EventRecord] = deque()
        self._wakeup = asyncio.Event()
        self._end: SubscriptionEnded | None = None

    @property
    def ended(self) -> bool:
        return self._end is not None

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> EventRecord:
        # Pending events go out before the end is reported: what was received stays complete.
        while not self._pending:
            if self._end is not None:
                raise self._end
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._pending.popleft()

    def offer(self, record: EventRecord) -> bool:
        """Queue `record` (the hub's side); False, and nothing queued, when the queue is full."""
        if len(self._pending) >= self._max_pending:
            return False
        self._pending.append(record)
        self._wakeup.set()
        return True

    def finish(self, reason: SubscriptionEnded) -> None:
        """End the stream (the hub's side) once the consumer has taken what is queued."""
        if self._end is None:
            self._end = reason
            self._wakeup.set()
