"""Commit-ordered `created_at`: how every event is stamped, and why.

Readers that follow the log keep the cursor, (created_at, id), of the last event they saw and ask
for what comes after it. That is only safe if no event can ever become visible *behind* a cursor
already handed out. When `created_at` was the transaction's start time, it could: a transaction
that started first and committed last put its events behind cursors readers already held, and a
tailing reader lost them for good (15% of events under concurrent batch writes).

So every statement that inserts events first takes the lock of the one row of `event_clock` (an
UPDATE, whose lock is held until COMMIT or ROLLBACK) and stamps its events after the last stamp
handed out: from `greatest(clock_timestamp(), last + 1 µs)` on, one microsecond apart, in input
order. A writer waits for the previous one to commit before it can stamp, so stamps follow commit
order across worker processes and service replicas alike (they share the database, hence the row),
and the clock never runs backwards even if the machine's does. Once a reader sees an event, every
event stamped before it has committed; every event still to commit will be stamped after it. The
stamp also makes the event's id (db.ids) and names the statement's events in its one notification
(db.live_feed.notifications): no other statement's stamps fall between its first and last.

The alternative, handing cursor readers only the rows below the oldest in-progress writer's
horizon, leaves writers unserialised but needs every writer registered where readers can see it
and every page to compute the horizon; readers would also lag behind the slowest writer. The lock
costs writers a short critical section (their INSERT and COMMIT) and nothing on reads; group
commit (db.group_commit) keeps the number of such sections per second low. The README's
benchmarks show what it costs.

The inserting statement must be the last of its transaction before COMMIT, so that the critical
section stays short, and the only one that takes other locks (idempotency keys) must take them
first: the clock is always the last lock a writer takes, so writers cannot deadlock on it.
"""


def clock_cte(count: str) -> str:
    """A CTE `clock(last_at)` reserving `count` stamps (an SQL expression); `last_at` is the last of them."""
    return (
        "clock AS (UPDATE event_clock "
        "SET last_at = greatest(clock_timestamp(), last_at + interval '1 microsecond') "
        f"+ ({count} - 1) * interval '1 microsecond' RETURNING last_at)"
    )


def stamp(count: str, position: str) -> str:
    """The `created_at` of the event at 1-based `position` of `count`, from the `clock` CTE."""
    return f"clock.last_at - ({count} - {position}) * interval '1 microsecond'"
