"""Following the log: every matching event after a position, first from the table, then live.

Stamps follow commit order (db.event_clock), so "after this position" is a complete answer at any
moment, and the live feed (db.live_feed.hub) delivers in the same order. A follower therefore:

1. subscribes to the live feed first, so nothing committed from then on can pass unseen;
2. replays from the table every matching event after its position, page by page, in order;
3. goes on with the live events, skipping those at or before its position (the replay already
   delivered them: that is where the two overlap).

When the live feed breaks (the LISTEN connection dropped, the database restarted) or this follower
fell so far behind that its live queue overflowed, nothing is lost: it waits for the feed to listen
again and starts over at step 1 from the last event it delivered. Its consumer sees nothing but
latency. Only when the feed stays down past `resume_timeout_s` does the stream end, with
EventFeedUnavailable: resume later from the last cursor received.
"""

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from db.engine import Database
from db.filters import EventFilter
from db.live_feed.hub import EventHub
from db.live_feed.notifications import EventRecord, as_event_record
from db.live_feed.subscription import (
    EventFeedInterrupted,
    EventFeedUnavailable,
    SubscriberTooSlow,
    Subscription,
    SubscriptionEnded,
)
from db.repository import EventKey, event_key, list_events_page, newest_event_key

log = logging.getLogger(__name__)

# Before every event: a follower from the beginning of the log starts here.
BEGINNING = EventKey(datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
# Rows read per round trip while catching up from the table.
REPLAY_PAGE_ROWS = 500


class Follower:
    """Every event matching `event_filter` after `after` (None: from now on), in order, until ended.

    Iterate it once. `end(reason)` stops it from outside (say, its subscriber's key was revoked):
    the iteration raises `reason` right away.
    """

    def __init__(
        self,
        hub: EventHub,
        database: Database,
        event_filter: EventFilter,
        *,
        after: EventKey | None,
        resume_timeout_s: float = 30.0,
    ) -> None:
        self._hub = hub
        self._database = database
        self._filter = event_filter
        self._after = after
        self._resume_timeout_s = resume_timeout_s
        self._live: Subscription | None = None
        self._ended: SubscriptionEnded | None = None

    def end(self, reason: SubscriptionEnded) -> None:
        """Stop following: the iteration raises `reason` (after no further event)."""
        self._ended = reason
        if self._live is not None:
            self._live.finish(reason)

    async def __aiter__(self) -> AsyncIterator[EventRecord]:
        position = self._after
        replay = position is not None
        while True:
            self._raise_if_ended()
            try:
                async with self._hub.subscribe(self._filter) as live:
                    self._live = live
                    if position is None:
                        # From now on: the newest event committed once we listen ends the history.
                        position = await _newest(self._database, self._filter) or BEGINNING
                    if replay:
                        async for record in _history(self._database, self._filter, position):
                            self._raise_if_ended()
                            yield record
                            position = event_key(record)
                    async for record in live:
                        key = event_key(record)
                        if _at_or_before(key, position):
                            continue  # the replay delivered it already
                        yield record
                        position = key
            except (EventFeedInterrupted, EventFeedUnavailable, SubscriberTooSlow) as gap:
                # Whatever the live feed missed is in the table: catch up from there once it listens.
                log.info("follower catching up from the table after: %s", gap)
                if not await self._hub.wait_listening(self._resume_timeout_s):
                    raise EventFeedUnavailable(
                        "the live event feed is down; resume from your last cursor in a while"
                    ) from None
                replay = True
            finally:
                self._live = None

    def _raise_if_ended(self) -> None:
        if self._ended is not None:
            raise self._ended


async def _newest(database: Database, event_filter: EventFilter) -> EventKey | None:
    async with database.single_statement() as connection:
        return await newest_event_key(connection, event_filter)


async def _history(
    database: Database, event_filter: EventFilter, after: EventKey
) -> AsyncIterator[EventRecord]:
    position = after
    while True:
        async with database.single_statement() as connection:
            rows, more = await list_events_page(
                connection,
                event_filter,
                newest_first=False,
                after=position,
                before=None,
                limit=REPLAY_PAGE_ROWS,
            )
        for row in rows:
            yield as_event_record(row)
        if not more or not rows:
            return
        position = event_key(rows[-1])


def _at_or_before(key: EventKey, position: EventKey) -> bool:
    return (key.created_at, key.id) <= (position.created_at, position.id)
