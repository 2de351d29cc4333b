"""The Subscription type: events as they are recorded, by any worker process, filtered like queries."""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager, suppress

import strawberry

from db.api_keys import EVENTS_READ, NotAuthenticated
from db.live_feed.follow import Follower
from db.live_feed.subscription import AccessRevoked, SubscriptionEnded
from db.repository import event_key
from graphql_schema.context import Context
from graphql_schema.cursors import decode_cursor
from graphql_schema.errors import SubscriptionEndedError
from graphql_schema.inputs import EventFilter, to_event_filter
from graphql_schema.types import Event, event_from_record

EVENT_RECORDED_DESCRIPTION = (
    "Each event that matches `filter`, in commit order, recorded through REST or GraphQL by any "
    "server process: from now on, or, with `after` (the `cursor` of the last event you received, "
    "or any event's cursor), every matching event after it first, then the live ones, with no gap "
    "and no duplicate. A dropped database feed, a database restart or a slow client cost only "
    "latency: the server catches up from the table. The stream ends with an error only when the "
    "feed stays down (SERVICE_UNAVAILABLE: resubscribe later with your last cursor) or the API key "
    "is revoked (UNAUTHENTICATED)."
)


@strawberry.type
class Subscription:
    @strawberry.subscription(description=EVENT_RECORDED_DESCRIPTION)
    async def event_recorded(
        self,
        info: strawberry.Info[Context, None],
        filter: EventFilter | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Matching events after `after` (or from now on), then live, one at a time."""
        # Converted before subscribing: a bad filter or cursor is refused without touching the feed.
        event_filter = to_event_filter(filter)
        context = info.context
        start = decode_cursor(after, "after") if after is not None else context.resume_after
        follower = Follower(context.event_hub, context.database, event_filter, after=start)
        try:
            async with _ended_when_key_is_revoked(context, follower):
                async for record in follower:
                    # The websocket keeps one context for its whole life: fresh loaders per event,
                    # or an `actor` resolved now could come from a cache filled minutes ago.
                    context.renew_loaders()
                    context.last_event_key = event_key(record)
                    yield event_from_record(record)
        except SubscriptionEnded as ended:
            raise SubscriptionEndedError(ended) from None


@asynccontextmanager
async def _ended_when_key_is_revoked(context: Context, follower: Follower) -> AsyncIterator[None]:
    """While inside, re-check the subscriber's key and end `follower` once it no longer may read.

    The gate checked the key when the subscription started; a stream can outlive that by days.
    """
    if not context.settings.auth_required:
        yield
        return
    watcher = asyncio.create_task(_watch_key(context, follower), name="subscription-key-watch")
    try:
        yield
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher


async def _watch_key(context: Context, follower: Follower) -> None:
    verifier = context.key_verifier
    while True:
        await asyncio.sleep(verifier.recheck_interval_s)
        try:
            key = await verifier.identify(context.presented_key())
        except NotAuthenticated:
            follower.end(AccessRevoked("The API key was revoked: the live feed has ended."))
            return
        if not key.allows(EVENTS_READ):
            follower.end(AccessRevoked(f"The API key no longer holds the '{EVENTS_READ}' scope."))
            return
