"""The event clock hands out turns: statements insert at the same time and commit in stamp order.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# db/event_clock.py says why. The clock was one row whose lock every inserting statement held from
# its stamps to its COMMIT, so statements inserted one after another. Now:
#
# - `event_clock_reserve(n)` hands out the next n stamps and a turn, under a session advisory lock
#   held for those few lines only (a sequence keeps the last stamp, in microseconds since the epoch:
#   sequences are not rolled back and are seen by every session at once). The turn's own advisory
#   lock is taken before the next caller can have a turn, and held until this transaction ends.
# - The statement then inserts, at the same time as any other.
# - `event_clock_wait`, the first AFTER trigger of the statement (triggers fire in name order: before
#   the rollups' event_counts_hourly_insert, so rollup rows are only ever locked in turn order), waits
#   until every earlier turn's transaction has ended. It waits for the turn before its own; if that
#   one ended without having waited itself (it failed or was rolled back before its trigger ran), it
#   also waits for the one before, and so on, until it finds a turn that had waited: `event_clock_waited`
#   records the last turn whose wait was over, and such a turn ended only after all before it.
#
# So a transaction commits only after every transaction stamped before it has committed or rolled
# back, and readers keep their guarantee. A transaction takes one turn at most: with a second, it
# would wait for the turns between its two, which wait for its first (a deadlock), so a second
# reservation is refused with an error that says so. A statement of SQL typed by hand reserves no
# turn and waits for none (as before, it orders nothing). Frozen here: a changed function is a new
# revision.
#
# The advisory lock keys: (2026113001, 0) is the reservation's, (2026113002, turn) each turn's.
RESERVE_FUNCTION = """
CREATE FUNCTION event_clock_reserve(n bigint) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    last_us bigint;
    turn bigint;
BEGIN
    IF current_setting('activity.event_clock_turn_taken', true) = 'yes' THEN
        RAISE EXCEPTION 'one statement per transaction may take a turn of the event clock'
            USING HINT = 'Insert the events in one statement: a second turn would wait for turns '
                'that wait for the first.';
    END IF;
    BEGIN
        PERFORM pg_advisory_lock(2026113001, 0);
        last_us := greatest((extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
                            pg_sequence_last_value('event_clock_us') + 1) + n - 1;
        PERFORM setval('event_clock_us', last_us);
        turn := nextval('event_clock_turn');
        PERFORM pg_advisory_xact_lock(2026113002, (turn % 2147483647)::integer);
        PERFORM pg_advisory_unlock(2026113001, 0);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        -- A session lock outlives the transaction: never leave it held, or every writer waits.
        PERFORM pg_advisory_unlock(2026113001, 0);
        RAISE;
    END;
    PERFORM set_config('activity.event_clock_turn', turn::text, true);
    PERFORM set_config('activity.event_clock_turn_taken', 'yes', true);
    RETURN timestamptz 'epoch' + last_us * interval '1 microsecond';
END
$$
"""
WAIT_FUNCTION = """
CREATE FUNCTION event_clock_wait() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    turn bigint := nullif(current_setting('activity.event_clock_turn', true), '')::bigint;
    earlier bigint;
BEGIN
    IF turn IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('activity.event_clock_turn', '', true);
    earlier := turn - 1;
    LOOP
        EXIT WHEN earlier < 1;
        -- Granted once that turn's transaction has ended, and let go at once: after a long run of
        -- turns that never waited, one lock kept per turn would exhaust the lock table. (Left held
        -- by an interruption in between, a turn that has ended blocks nobody.)
        PERFORM pg_advisory_lock_shared(2026113002, (earlier % 2147483647)::integer);
        PERFORM pg_advisory_unlock_shared(2026113002, (earlier % 2147483647)::integer);
        EXIT WHEN pg_sequence_last_value('event_clock_waited') >= earlier;
        earlier := earlier - 1;
    END LOOP;
    PERFORM setval('event_clock_waited', turn);
    RETURN NULL;
END
$$
"""
WAIT_TRIGGER = (
    "CREATE TRIGGER event_clock_wait AFTER INSERT ON events "
    "FOR EACH STATEMENT EXECUTE FUNCTION event_clock_wait()"
)


def upgrade() -> None:
    # Writers of the old revision must not stamp between the read and the drop below.
    op.execute("LOCK TABLE event_clock IN EXCLUSIVE MODE")
    op.execute("CREATE SEQUENCE event_clock_us MINVALUE 0")
    op.execute(
        "SELECT setval('event_clock_us', (extract(epoch FROM last_at) * 1000000)::bigint) FROM event_clock"
    )
    op.execute("CREATE SEQUENCE event_clock_turn MINVALUE 0")
    op.execute("SELECT setval('event_clock_turn', 0)")
    op.execute("CREATE SEQUENCE event_clock_waited MINVALUE 0")
    op.execute("SELECT setval('event_clock_waited', 0)")
    op.execute(RESERVE_FUNCTION)
    op.execute(WAIT_FUNCTION)
    op.execute(WAIT_TRIGGER)
    op.execute("DROP TABLE event_clock")


def downgrade() -> None:
    op.execute(
        "CREATE TABLE event_clock (id boolean DEFAULT true NOT NULL, last_at timestamptz NOT NULL, "
        "CONSTRAINT pk_event_clock PRIMARY KEY (id), CONSTRAINT ck_event_clock_single_row CHECK (id))"
    )
    op.execute(
        "INSERT INTO event_clock (id, last_at) "
        "SELECT true, timestamptz 'epoch' + last_value * interval '1 microsecond' FROM event_clock_us"
    )
    op.execute("DROP TRIGGER event_clock_wait ON events")
    op.execute("DROP FUNCTION event_clock_wait()")
    op.execute("DROP FUNCTION event_clock_reserve(bigint)")
    for sequence in ("event_clock_us", "event_clock_turn", "event_clock_waited"):
        op.execute(f"DROP SEQUENCE {sequence}")
