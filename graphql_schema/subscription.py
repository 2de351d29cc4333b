"""The Subscription type: events as they are recorded, by any worker process, filtered like queries."""

from collections.abc import AsyncGenerator

import strawberry

from db.event_hub import EventHub
from db.event_subscription import SubscriptionEnded
from graphql_schema.auth import CanReadEvents
from graphql_schema.context import Context
from graphql_schema.errors import SubscriptionEndedError
from graphql_schema.inputs import EventFilter, to_event_filter
from graphql_schema.types import Event, event_from_record

EVENT_RECORDED_DESCRIPTION = (
    "Each event recorded from now on (through REST or GraphQL, by any server process) that matches "
    "`filter`, in commit order. The stream never skips an event silently: if the client falls too "
    "far behind (SUBSCRIBER_TOO_SLOW) or the server loses its database feed (SERVICE_UNAVAILABLE), "
    "it ends with an error after the last event delivered; query for the rest, then resubscribe."
)


@strawberry.type
class Subscription:
    @strawberry.subscription(permission_classes=[CanReadEvents], description=EVENT_RECORDED_DESCRIPTION)
    async def event_recorded(
        self, info: strawberry.Info[Context, None], filter: EventFilter | None = None
    ) -> AsyncGenerator[Event, None]:
        """Matching events from this process's live feed (db.event_hub), one at a time."""
        # Converted before subscribing: a bad filter is refused without touching the feed.
        event_filter = to_event_filter(filter)
        hub: EventHub = info.context.request.app.state.event_hub
        try:
            async with hub.subscribe(event_filter) as events:
                async for record in events:
                    # The websocket keeps one context for its whole life: fresh loaders per event,
                    # or an `actor` resolved now could come from a cache filled minutes ago.
                    info.context.renew_loaders()
                    yield event_from_record(record)
        except SubscriptionEnded as ended:
            raise SubscriptionEndedError(ended) from None
