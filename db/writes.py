"""The two ways an event is written, chosen in one place for both doors.

Without an idempotency key, single events go through group commit (db.group_commit) and batches
through one multi-row statement. With a key, the event claims the key in its own transaction
(db.idempotency), so that retries find what the first attempt recorded.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from db.engine import Database
from db.group_commit import GroupCommitter
from db.idempotency import KeyedEvent, RecordedEvent, insert_event_once, insert_events_once
from db.repository import insert_events
from db.validation import NewEvent


@dataclass(frozen=True, slots=True)
class KeyScope:
    """Whose idempotency keys these are (an API key's id, or "") and how long they hold."""

    owner: str
    window: timedelta


async def record_one(
    writer: GroupCommitter, database: Database, event: NewEvent, *, key: str | None, scope: KeyScope
) -> RecordedEvent:
    """Record one event (or find the one its key recorded); returns once committed."""
    if key is None:
        return RecordedEvent(await writer.record(event), replayed=False)
    async with database.transaction() as connection:
        return await insert_event_once(connection, event, owner=scope.owner, key=key, window=scope.window)


async def record_many(
    database: Database, items: Sequence[KeyedEvent], *, scope: KeyScope
) -> list[RecordedEvent]:
    """Record a batch in one transaction, all or nothing, in input order."""
    if any(item.key is not None for item in items):
        async with database.transaction() as connection:
            return await insert_events_once(connection, items, owner=scope.owner, window=scope.window)
    # One statement is a transaction of its own: all or nothing without BEGIN and COMMIT.
    async with database.single_statement() as connection:
        records = await insert_events(connection, [item.event for item in items])
    return [RecordedEvent(record, replayed=False) for record in records]
