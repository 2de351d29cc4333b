"""Hourly event counts, kept by triggers on `events` in the transaction of every write.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# db/stats.py reads these rollups for counts over time. Statement-level triggers with transition
# tables keep them, so every write path (group commit, batches, idempotent inserts, COPY, SQL typed
# by hand) stays consistent with no application code: one grouped upsert per inserting statement,
# in its transaction. The rows are upserted in key order so that two writers touching the same
# hours lock them in the same order (the service's writers also reach them in turn: db.event_clock).
#
# A delete subtracts; an hour whose earliest (latest) event went is given its new earliest (latest)
# from `events` through ix_events_component_created_at_id (retention deletes oldest first, so the
# next remaining event is found at once), and an emptied hour is removed. An update (the service
# never updates events) is a delete of the old rows and an insert of the new ones. TRUNCATE empties
# the rollups too. Frozen here: a changed function is a new revision, not an edit of this one.
APPLY_FUNCTION = """
CREATE FUNCTION event_counts_hourly_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        WITH gone AS (
            SELECT date_trunc('hour', created_at, 'UTC') AS hour, component, environment,
                   count(*) AS count, min(created_at) AS first_at, max(created_at) AS last_at
            FROM old_rows GROUP BY 1, 2, 3
        )
        UPDATE event_counts_hourly AS r SET
            count = r.count - gone.count,
            first_at = CASE WHEN gone.first_at > r.first_at THEN r.first_at ELSE coalesce(
                (SELECT min(e.created_at) FROM events AS e
                 WHERE e.component = r.component AND e.environment = r.environment
                   AND e.created_at >= r.hour AND e.created_at < r.hour + interval '1 hour'),
                r.first_at) END,
            last_at = CASE WHEN gone.last_at < r.last_at THEN r.last_at ELSE coalesce(
                (SELECT max(e.created_at) FROM events AS e
                 WHERE e.component = r.component AND e.environment = r.environment
                   AND e.created_at >= r.hour AND e.created_at < r.hour + interval '1 hour'),
                r.last_at) END
        FROM gone
        WHERE r.hour = gone.hour AND r.component = gone.component AND r.environment = gone.environment;
        DELETE FROM event_counts_hourly AS r
        WHERE r.count <= 0 AND (r.hour, r.component, r.environment) IN (
            SELECT date_trunc('hour', created_at, 'UTC'), component, environment FROM old_rows
        );
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO event_counts_hourly AS r (hour, component, environment, count, first_at, last_at)
        SELECT date_trunc('hour', created_at, 'UTC'), component, environment,
               count(*), min(created_at), max(created_at)
        FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (hour, component, environment) DO UPDATE SET
            count = r.count + excluded.count,
            first_at = least(r.first_at, excluded.first_at),
            last_at = greatest(r.last_at, excluded.last_at);
    END IF;
    RETURN NULL;
END
$$
"""
CLEAR_FUNCTION = """
CREATE FUNCTION event_counts_hourly_clear() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- DELETE, not TRUNCATE: the rollups are small, and TRUNCATE makes new files every time.
    DELETE FROM event_counts_hourly;
    RETURN NULL;
END
$$
"""
TRIGGERS = (
    "CREATE TRIGGER event_counts_hourly_insert AFTER INSERT ON events "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION event_counts_hourly_apply()",
    "CREATE TRIGGER event_counts_hourly_update AFTER UPDATE ON events "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION event_counts_hourly_apply()",
    "CREATE TRIGGER event_counts_hourly_delete AFTER DELETE ON events "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION event_counts_hourly_apply()",
    "CREATE TRIGGER event_counts_hourly_truncate AFTER TRUNCATE ON events "
    "FOR EACH STATEMENT EXECUTE FUNCTION event_counts_hourly_clear()",
)
BACKFILL = """
INSERT INTO event_counts_hourly (hour, component, environment, count, first_at, last_at)
SELECT date_trunc('hour', created_at, 'UTC'), component, environment,
       count(*), min(created_at), max(created_at)
FROM events GROUP BY 1, 2, 3
"""


def upgrade() -> None:
    op.create_table(
        "event_counts_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("component", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hour", "component", "environment", name=op.f("pk_event_counts_hourly")),
    )
    # "One component over a month" reads one range of this index, not every component's hours.
    op.create_index("ix_event_counts_hourly_component_hour", "event_counts_hourly", ["component", "hour"])
    op.execute(APPLY_FUNCTION)
    op.execute(CLEAR_FUNCTION)
    # The triggers first: CREATE TRIGGER locks out writers until this transaction commits, so the
    # backfill below sees every event committed before it, and every later one fires a trigger.
    for trigger in TRIGGERS:
        op.execute(trigger)
    op.execute(BACKFILL)


def downgrade() -> None:
    for trigger in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER event_counts_hourly_{trigger} ON events")
    op.execute("DROP FUNCTION event_counts_hourly_apply()")
    op.execute("DROP FUNCTION event_counts_hourly_clear()")
    op.drop_index("ix_event_counts_hourly_component_hour", table_name="event_counts_hourly")
    op.drop_table("event_counts_hourly")
