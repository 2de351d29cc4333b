"""Retention: drop the partitions of events wholly older than a cutoff, delete the rest in batches.

Dropping a partition is instant and leaves no dead rows behind; the remainder (the part of the
partition that straddles the cutoff, or a range not on partition boundaries) is deleted in small
batches, each its own short transaction, as before partitioning.
"""

import logging
from datetime import datetime, timedelta

import asyncpg

from db.engine import Database
from db.idempotency import forget_keys_before
from db.partitions import HEAD, SCHEMA, create_partition, event_partitions, lock_partitions

log = logging.getLogger(__name__)

# Oldest first through ix_events_created_at_id; SKIP LOCKED so a prune never waits on (or blocks)
# anything else touching those rows, and each batch's locks are held only for one short statement.
# By the whole primary key, so each row is found in its own partition.
_DELETE_BATCH = """
DELETE FROM events WHERE (id, created_at) IN (
    SELECT id, created_at FROM events WHERE created_at < $1
    ORDER BY created_at, id LIMIT $2
    FOR UPDATE SKIP LOCKED
)
"""


async def prune_events_before(database: Database, cutoff: datetime, *, batch_size: int) -> int:
    """Delete every event created before `cutoff`; return how many were deleted."""
    deleted = await drop_partitions_before(database, cutoff)
    while True:
        async with database.transaction() as connection:
            status = await connection.execute(_DELETE_BATCH, cutoff, batch_size)
        batch = int(status.split()[-1])  # "DELETE <n>"
        deleted += batch
        if batch < batch_size:
            return deleted


def _on_the_hour(moment: datetime) -> bool:
    return (
        moment.minute == 0
        and moment.second == 0
        and moment.microsecond == 0
        and moment.utcoffset() is not None
    )


async def drop_partitions_before(database: Database, cutoff: datetime) -> int:
    """Drop the partitions holding only events older than `cutoff`; return how many events they held.

    The head and the regular partitions after it, up to the last that ends by the cutoff, go in one
    transaction, and an empty head takes their place (so every created_at still has a partition).
    DROP fires no DELETE trigger, so the hourly rollups of the dropped range are removed here, in the
    same transaction: partitions end on whole UTC hours, so those hours held only dropped events,
    and their counts add up to how many went. Should `events` stay locked by others for longer than
    db.partitions.LOCK_TIMEOUT, nothing is dropped and the batches delete those events instead.
    """
    try:
        async with database.transaction() as connection:
            await lock_partitions(connection)
            partitions = await event_partitions(connection)
            expired = []
            for partition in partitions:
                if partition.upper is None or partition.upper > cutoff or not _on_the_hour(partition.upper):
                    break
                expired.append(partition)
            if not expired or expired[0].name != HEAD:
                return 0
            end = expired[-1].upper
            # Writers and readers wait for this transaction from here on (DROP would lock it anyway);
            # so no event can be added to the range between the count and the drop.
            await connection.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            dropped = await connection.fetchval(
                "WITH gone AS (DELETE FROM event_counts_hourly WHERE hour < $1 RETURNING count) "
                "SELECT coalesce(sum(count), 0) FROM gone",
                end,
            )
            for partition in expired:
                await connection.execute(f"DROP TABLE {SCHEMA}.{partition.name}")
            await create_partition(connection, HEAD, "MINVALUE", f"'{end.isoformat()}'")
    except asyncpg.LockNotAvailableError as error:
        log.warning(
            "could not drop expired partitions of events now (%s); deleting their rows instead", error
        )
        return 0
    if dropped:
        log.info("dropped %s (%s events before %s)", ", ".join(p.name for p in expired), dropped, end)
    return int(dropped)


async def forget_idempotency_keys_before(database: Database, age: timedelta) -> int:
    """Delete idempotency keys older than `age`; return how many."""
    async with database.transaction() as connection:
        return await forget_keys_before(connection, age)
