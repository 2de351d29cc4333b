"""GraphQL inputs and their translation to the domain objects in db/ (filter, new event)."""

from datetime import UTC, datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from db import filters
from db.idempotency import check_idempotency_key
from db.validation import EventLimits, NewEvent, validate_event
from graphql_schema.errors import BadUserInput, invalid_filter_error


@strawberry.input(description="Which events to return; every field given narrows the result (AND).")
class EventFilter:
    component: str | None = strawberry.field(default=None, description="Exact component.")
    environment: str | None = strawberry.field(default=None, description="Exact environment.")
    email: str | None = strawberry.field(default=None, description="Exact email.")
    component_in: list[str] | None = strawberry.field(default=None, description="Any of these components.")
    environment_in: list[str] | None = strawberry.field(
        default=None, description="Any of these environments."
    )
    message_contains: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of the message; `%` and `_` are literal."
    )
    search: str | None = strawberry.field(
        default=None,
        description='Full-text search over the message (web-search syntax: words, "phrases", OR, -word).',
    )
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Created at or after this instant (inclusive)."
    )
    to: datetime | None = strawberry.field(
        default=None, description="Created before this instant (exclusive)."
    )
    data_contains: JSON | None = strawberry.field(
        default=None, description="A JSON object the event's data must contain (JSONB `@>`)."
    )

    def to_event_filter(self) -> filters.EventFilter:
        """The db filter this input asks for; BAD_USER_INPUT when `dataContains` is not an object."""
        if self.data_contains is not None and not isinstance(self.data_contains, dict):
            raise BadUserInput("`dataContains` must be a JSON object.", field="dataContains")
        return filters.EventFilter(
            component=self.component,
            environment=self.environment,
            email=self.email,
            component_in=tuple(self.component_in) if self.component_in is not None else None,
            environment_in=tuple(self.environment_in) if self.environment_in is not None else None,
            message_contains=self.message_contains,
            search=self.search,
            created_from=_aware(self.from_),
            created_to=_aware(self.to),
            data_contains=self.data_contains,
        )


def to_event_filter(event_filter: EventFilter | None) -> filters.EventFilter:
    """The db filter for an optional GraphQL filter (no filter: every event), checked.

    Checked here, not only where SQL is built: a live subscription's filter never reaches SQL, and
    a value the database cannot compare must be the subscriber's error, not the feed's.
    """
    converted = event_filter.to_event_filter() if event_filter is not None else filters.EventFilter()
    try:
        filters.check_filter(converted)
    except filters.InvalidFilter as error:
        raise invalid_filter_error(error) from None
    return converted


def _aware(moment: datetime | None) -> datetime | None:
    # An instant without an offset is read as UTC, the zone every createdAt is given in.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@strawberry.enum(description="The order of an event list; ties on createdAt are broken by id.")
class EventOrder(Enum):
    NEWEST_FIRST = "newest_first"
    OLDEST_FIRST = "oldest_first"


@strawberry.input(description="An event to record; the server adds `id` and `createdAt`.")
class RecordEventInput:
    component: str = strawberry.field(description="Not empty or blank.")
    environment: str = strawberry.field(description="Not empty or blank.")
    email: str = strawberry.field(description="A valid email address.")
    message: str = strawberry.field(description="Not empty or blank.")
    data: JSON = strawberry.field(description="A JSON object (not a list, string or number).")
    idempotency_key: str | None = strawberry.field(
        default=None,
        description=(
            "Optional, 1 to 255 visible ASCII characters. A retry with the same key and the same "
            "event returns the event the first attempt recorded (same id) and writes nothing; the "
            "same key with another event is a BAD_USER_INPUT error."
        ),
    )

    def to_new_event(self, limits: EventLimits) -> NewEvent:
        """Validated by the one rule set both doors share; raises db.validation.InvalidEvent."""
        return validate_event(
            component=self.component,
            environment=self.environment,
            email=self.email,
            message=self.message,
            data=self.data,
            limits=limits,
        )

    def checked_idempotency_key(self) -> str | None:
        """The key, if any, checked (raises db.idempotency.InvalidIdempotencyKey)."""
        return None if self.idempotency_key is None else check_idempotency_key(self.idempotency_key)
