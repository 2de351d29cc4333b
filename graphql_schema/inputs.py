"""GraphQL inputs and their translation to the domain objects in db/ (filter, new event)."""

from collections.abc import Mapping
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from db import filters
from db.idempotency import MAX_KEY_LENGTH, check_idempotency_key
from db.validation import EventLimits, NewEvent, validate_event
from graphql_schema.errors import invalid_filter_error

# The GraphQL type of each kind of filter value (db.filters.Condition.value_type).
GRAPHQL_VALUE_TYPES: dict[type, object] = {str: str, tuple: list[str], datetime: datetime, dict: JSON}


_OFFERED = tuple(spec for spec in filters.FILTER_FIELDS if spec.graphql is not None)


def _filter_input_type() -> type:
    """The `EventFilter` input, one field for each filter field offered over GraphQL.

    Its Python attributes are the db filter's own names, so converting back is a copy.
    """
    offered = [spec for spec in filters.FILTER_FIELDS if spec.graphql is not None]
    namespace: dict[str, object] = {
        "__annotations__": {
            spec.name: GRAPHQL_VALUE_TYPES[spec.condition.value_type] | None for spec in offered
        }
    }
    for spec in _OFFERED:
        namespace[spec.name] = strawberry.field(default=None, name=spec.graphql, description=spec.description)
    return strawberry.input(
        type("EventFilter", (), namespace),
        description="Which events to return; every field given narrows the result (AND).",
    )


EventFilter = _filter_input_type()


def to_event_filter(event_filter: object | None) -> filters.EventFilter:
    """The db filter for an optional `EventFilter` input object (no filter: every event), checked."""
    if event_filter is None:
        return event_filter_from_graphql(None)
    return event_filter_from_graphql(
        {spec.graphql: getattr(event_filter, spec.name, None) for spec in _OFFERED}
    )


def event_filter_from_graphql(values: Mapping[str, object] | None) -> filters.EventFilter:
    """The db filter for an `EventFilter` value keyed by GraphQL names, as coerced, checked.

    Checked here, not only where SQL is built: a live subscription's filter never reaches SQL, and
    a value the database cannot compare must be the subscriber's error, not the feed's.
    """
    converted: dict[str, object] = {}
    for spec in _OFFERED if values else ():
        value = values.get(spec.graphql)  # type: ignore[union-attr, arg-type]  # values is set here
        if value is not None and spec.condition.value_type is tuple:
            value = tuple(value)  # type: ignore[call-overload]
        elif isinstance(value, datetime):
            value = filters.utc_if_naive(value)
        converted[spec.name] = value
    event_filter = filters.EventFilter(**converted)  # type: ignore[arg-type]  # types follow the definition
    try:
        filters.check_filter(event_filter)
    except filters.InvalidFilter as error:
        raise invalid_filter_error(error) from None
    return event_filter


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
            f"Optional, 1 to {MAX_KEY_LENGTH} visible ASCII characters. A retry with the same key and "
            "the same event returns the event the first attempt recorded (same id) and writes nothing; the "
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
