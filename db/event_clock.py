"""Commit-ordered `created_at`: how every event is stamped, and why.

Readers that follow the log keep the cursor, (created_at, id), of the last event they saw and ask
for what comes after it. That is only safe if no event can ever become visible *behind* a cursor
already handed out. When `created_at` was the transaction's start time, it could: a transaction
that started first and committed last put its events behind cursors readers already held, and a
tailing reader lost them for good (15% of events under concurrent batch writes).

So every statement that inserts events first takes a turn from the clock (`event_clock_reserve`,
migration 0009): its stamps, after the last stamp handed out, from `greatest(clock_timestamp(),
last + 1 µs)` on, one microsecond apart, in input order. It inserts at the same time as any other
statement; then, before it may commit, its first AFTER trigger (`event_clock_wait`) waits until
every transaction with an earlier turn has committed or rolled back. So transactions commit in
stamp order across worker processes and service replicas alike (they share the database, hence the
clock), and the clock never runs backwards even if the machine's does. Once a reader sees an event,
every event stamped before it has committed or never will; every event still to commit will be
stamped after it. The stamp also makes the event's id (db.ids) and names the statement's events in
its one notification (db.live_feed.notifications): no other statement's stamps fall between its
first and last.

Until 2026-11-30 the clock was one row whose lock a statement held from its stamps to its COMMIT:
statements inserted one after another, and PostgreSQL's work per row (the heap, eight indexes, the
WAL: about 35 µs) used one core however many writers waited. With turns only the commits are in
order; the inserts run on every core. The alternative, handing cursor readers only the rows below
the oldest in-progress writer's horizon, leaves writers unordered but needs every page to compute
that horizon, and readers would lag behind the slowest writer.

A transaction that waits for its turn must hold nothing an earlier turn could wait for, so writers
cannot deadlock on the clock. Hence: idempotency keys are claimed before the inserting statement;
the hourly rollups are upserted by a trigger that fires after the wait; nothing after the statement
takes a new lock (the keyed path only fills in rows it already holds); and a transaction takes one
turn at most (the function refuses a second: the turns between its two would wait for its first).
"""


def clock_cte(count: str) -> str:
    """A CTE `clock(last_at)`: a turn of `count` stamps (an SQL expression); `last_at` is the last."""
    return f"clock AS (SELECT event_clock_reserve({count}) AS last_at)"


def stamp(count: str, position: str) -> str:
    """The `created_at` of the event at 1-based `position` of `count`, from the `clock` CTE."""
    return f"clock.last_at - ({count} - {position}) * interval '1 microsecond'"
