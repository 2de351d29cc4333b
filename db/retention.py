"""Retention: delete events older than a cutoff in small batches, each its own short transaction."""

from datetime import datetime, timedelta

from db.engine import Database
from db.idempotency import forget_keys_before

# Oldest first through ix_events_created_at_id; SKIP LOCKED so a prune never waits on (or blocks)
# anything else touching those rows, and each batch's locks are held only for one short statement.
_DELETE_BATCH = """
DELETE FROM events WHERE id IN (
    SELECT id FROM events WHERE created_at < $1
    ORDER BY created_at, id LIMIT $2
    FOR UPDATE SKIP LOCKED
)
"""


async def prune_events_before(database: Database, cutoff: datetime, *, batch_size: int) -> int:
    """Delete every event created before `cutoff`; return how many were deleted."""
    deleted = 0
    while True:
        async with database.transaction() as connection:
            status = await connection.execute(_DELETE_BATCH, cutoff, batch_size)
        batch = int(status.split()[-1])  # "DELETE <n>"
        deleted += batch
        if batch < batch_size:
            return deleted


async def forget_idempotency_keys_before(database: Database, age: timedelta) -> int:
    """Delete idempotency keys older than `age`; return how many."""
    async with database.transaction() as connection:
        return await forget_keys_before(connection, age)
