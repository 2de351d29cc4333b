"""The Mutation type: record one event or a batch, answered only after the commit."""

import strawberry

from db.group_commit import GroupCommitter
from db.repository import insert_events
from db.validation import InvalidEvent, NewEvent
from graphql_schema.auth import CanWriteEvents
from graphql_schema.context import Context
from graphql_schema.errors import BadUserInput, invalid_event_error
from graphql_schema.inputs import RecordEventInput
from graphql_schema.types import Event, event_from_record

RECORD_EVENTS_DESCRIPTION = (
    "Record several events in one transaction: all are stored or none is. At most the server's "
    "`max_batch_events` (1000 by default) per call; more is a BAD_USER_INPUT error. A rejected "
    "input names its `field` and `index` in the error's extensions. Send large batches as a "
    "variable: the query text itself is limited in size."
)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        permission_classes=[CanWriteEvents],
        description="Record one event. A rejected input is a BAD_USER_INPUT error naming its `field`.",
    )
    async def record_event(self, info: strawberry.Info[Context, None], input: RecordEventInput) -> Event:
        """Validate, store and return one event."""
        try:
            new_event = input.to_new_event()
        except InvalidEvent as error:
            raise invalid_event_error(error) from None
        # Concurrent writes share a commit (db.group_commit); this returns once it has committed.
        writer: GroupCommitter = info.context.request.app.state.event_writer
        record = await writer.record(new_event)
        return event_from_record(record)

    @strawberry.mutation(permission_classes=[CanWriteEvents], description=RECORD_EVENTS_DESCRIPTION)
    async def record_events(
        self, info: strawberry.Info[Context, None], inputs: list[RecordEventInput]
    ) -> list[Event]:
        """Validate every input first, then store them all in one statement."""
        limit = info.context.settings.max_batch_events
        if len(inputs) > limit:
            raise BadUserInput(
                f"`inputs` holds {len(inputs)} events; at most {limit} per call.", field="inputs"
            )
        new_events: list[NewEvent] = []
        for index, event_input in enumerate(inputs):
            try:
                new_events.append(event_input.to_new_event())
            except InvalidEvent as error:
                raise invalid_event_error(error, index=index) from None
        async with info.context.database.transaction() as connection:
            records = await insert_events(connection, new_events)
        return [event_from_record(record) for record in records]
