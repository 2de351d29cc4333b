"""The two ways an event is written, chosen in one place for both doors.

Without an idempotency key, single events go through group commit (db.group_commit) and batches
through one multi-row statement. With a key, the event claims the key in its own transaction
(db.idempotency), so that retries find what the first attempt recorded.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from db.engine import Database
from db.group_commit import GroupCommitter
from db.idempotency import KeyedEvent, RecordedEvent, insert_event_once, insert_events_once
from db.repository import insert_events
from db.validation import NewEvent

# Told how many events each call newly recorded (replays of an idempotency key excluded), once
# committed: api.metrics counts them. A plain callable, so db/ knows nothing of metrics.
on_recorded: Callable[[int], None] | None = None


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
        recorded = RecordedEvent(await writer.record(event), replayed=False)
    else:
        async with database.transaction() as connection:
            recorded = await insert_event_once(
                connection, event, owner=scope.owner, key=key, window=scope.window
            )
    _report([recorded])
    return recorded


async def record_many(
    database: Database, items: Sequence[KeyedEvent], *, scope: KeyScope
) -> list[RecordedEvent]:
    """Record a batch in one transaction, all or nothing, in input order."""
    if any(item.key is not None for item in items):
        async with database.transaction() as connection:
            recorded = await insert_events_once(connection, items, owner=scope.owner, window=scope.window)
    else:
        # One statement is a transaction of its own: all or nothing without BEGIN and COMMIT.
        async with database.single_statement() as connection:
            records = await insert_events(connection, [item.event for item in items])
        recorded = [RecordedEvent(record, replayed=False) for record in records]
    _report(recorded)
    return recorded


def _report(recorded: Sequence[RecordedEvent]) -> None:
    if on_recorded is not None:
        on_recorded(sum(not event.replayed for event in recorded))
