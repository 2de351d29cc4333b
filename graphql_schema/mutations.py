"""The Mutation type: record one event or a batch, answered only after the commit."""

import strawberry

from api.settings import Settings
from db.batches import IDEMPOTENCY_KEY_FIELD, BatchTooLarge, check_batch_size, check_items
from db.idempotency import RecordedEvent
from db.validation import InvalidEvent
from db.writes import record_many, record_one
from graphql_schema.context import Context
from graphql_schema.errors import BadUserInput, invalid_event_error
from graphql_schema.inputs import RecordEventInput
from graphql_schema.types import Event, event_from_record

RECORD_EVENTS_DESCRIPTION = (
    "Record several events in one transaction: all are stored or none is. At most the server's "
    f"`max_batch_events` ({Settings.model_fields['max_batch_events'].default} by default) per call; "
    "more is a BAD_USER_INPUT error. A rejected "
    "input names its `field` and `index` in the error's extensions. Send large batches as a "
    "variable: the query text itself is limited in size."
)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Record one event. A rejected input is a BAD_USER_INPUT error naming its `field`.",
    )
    async def record_event(self, info: strawberry.Info[Context, None], input: RecordEventInput) -> Event:
        """Validate, store and return one event (or the one its idempotency key recorded)."""
        outcome = info.context.planned_outcome(info.path.key)
        result = outcome.result() if outcome is not None else await record_event_input(info.context, input)
        # Returned after the commit: the client never sees an event that could vanish.
        return event_from_record(result.record)

    @strawberry.mutation(description=RECORD_EVENTS_DESCRIPTION)
    async def record_events(
        self, info: strawberry.Info[Context, None], inputs: list[RecordEventInput]
    ) -> list[Event]:
        """Validate every input first, then store them all in one transaction."""
        outcome = info.context.planned_outcome(info.path.key)
        results = outcome.result() if outcome is not None else await record_event_inputs(info.context, inputs)
        return [event_from_record(result.record) for result in results]


# `Mutation.recordEvent` and `recordEvents` themselves, shared by the resolvers and the compiled
# plans (graphql_schema.plans).


async def record_event_input(context: Context, input: RecordEventInput) -> RecordedEvent:
    try:
        new_event = input.to_new_event(context.settings.event_limits)
    except InvalidEvent as error:
        raise invalid_event_error(error) from None
    # What the answer reads after the write (its actor's counts) must include it: the primary's.
    context.loaders.replica_reads = False
    return await record_one(
        context.event_writer,
        context.database,
        new_event,
        key=input.checked_idempotency_key(),
        scope=context.key_scope(),
    )


async def record_event_inputs(context: Context, inputs: list[RecordEventInput]) -> list[RecordedEvent]:
    try:
        check_batch_size(len(inputs), context.settings.max_batch_events)
    except BatchTooLarge as error:
        raise BadUserInput(str(error), field="inputs") from None
    limits = context.settings.event_limits
    items, problems = check_items(
        inputs, lambda item: item.to_new_event(limits), RecordEventInput.checked_idempotency_key
    )
    if problems:
        first = problems[0]
        field = "idempotencyKey" if first.field == IDEMPOTENCY_KEY_FIELD else first.field
        raise BadUserInput(first.reason, field=field, index=first.index)
    context.loaders.replica_reads = False  # as in record_event_input
    return await record_many(context.database, items, scope=context.key_scope())
