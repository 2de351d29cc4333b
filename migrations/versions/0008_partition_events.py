"""Partition `events` by range of created_at: monthly partitions, between two catch-all ends.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# db/partitions.py says why and keeps the partitions afterwards (ahead of time, at the configured
# interval). This revision converts the table as it stands: a new partitioned `events` with one
# partition per UTC month from the oldest event's month to the current one, `head` (MINVALUE up to
# that first month) and `tail` (from the end of the current month to MAXVALUE), so every row has a
# partition whatever its created_at. The partitions live in their own schema, `event_partitions`:
# `public` keeps only the tables the models declare (and Alembic compares). The rows are copied
# unchanged, then the old table is dropped. The indexes, the column defaults (uuid7_at, now()) and
# the rollup triggers of 0007 are re-created on the new table; the rollups themselves are untouched
# (the same rows, so the same counts).
# The primary key must hold the partition key, so it becomes (id, created_at). Everything is frozen
# here: a changed layout is a new revision, not an edit of this one.

COLUMNS = "id, component, environment, email, message, data, created_at"
CREATE_PARTITIONED = """
CREATE TABLE events (
    id uuid DEFAULT uuid7_at(clock_timestamp()) NOT NULL,
    component text NOT NULL,
    environment text NOT NULL,
    email text,
    message text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz DEFAULT now() NOT NULL,
    CONSTRAINT pk_events PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at)
"""
CREATE_UNPARTITIONED = """
CREATE TABLE events (
    id uuid DEFAULT uuid7_at(clock_timestamp()) NOT NULL,
    component text NOT NULL,
    environment text NOT NULL,
    email text,
    message text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz DEFAULT now() NOT NULL,
    CONSTRAINT pk_events PRIMARY KEY (id)
)
"""
# The indexes of 0001 and 0004, by name; on the partitioned table each is a partitioned index.
INDEXES = (
    "CREATE INDEX ix_events_created_at_id ON events (created_at, id)",
    "CREATE INDEX ix_events_component_created_at_id ON events (component, created_at, id)",
    "CREATE INDEX ix_events_environment_created_at_id ON events (environment, created_at, id)",
    "CREATE INDEX ix_events_email_created_at_id ON events (email, created_at, id)",
    "CREATE INDEX ix_events_component_email_created_at_id ON events (component, email, created_at, id)",
    "CREATE INDEX ix_events_message_fts ON events USING gin (to_tsvector('simple', message))",
    "CREATE INDEX ix_events_data_path_ops ON events USING gin (data jsonb_path_ops)",
)
INDEX_NAMES = (
    "ix_events_created_at_id",
    "ix_events_component_created_at_id",
    "ix_events_environment_created_at_id",
    "ix_events_email_created_at_id",
    "ix_events_component_email_created_at_id",
    "ix_events_message_fts",
    "ix_events_data_path_ops",
)
# The triggers of 0007, unchanged: statement-level with transition tables, which PostgreSQL supports
# on a partitioned table (the transition tables hold the rows of every partition the statement touched).
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
# One partition per UTC month from the oldest event's to the current one, and the two ends. Each
# partition's indexes are named after the parent's (event_partitions.ix_events_created_at_id_p20261101),
# so plans name the index they use whichever partition it belongs to.
CREATE_PARTITIONS = """
DO $$
DECLARE
    first_month timestamptz := date_trunc('month', coalesce(
        (SELECT min(created_at) FROM events_unpartitioned), now()), 'UTC');
    last_month timestamptz := date_trunc('month', greatest(
        (SELECT max(created_at) FROM events_unpartitioned), now()), 'UTC');
    month timestamptz;
BEGIN
    SET LOCAL timezone = 'UTC';
    EXECUTE format('CREATE TABLE event_partitions.head PARTITION OF events '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', first_month);
    month := first_month;
    WHILE month <= last_month LOOP
        EXECUTE format('CREATE TABLE event_partitions.%I PARTITION OF events '
                       'FOR VALUES FROM (%L) TO (%L)',
                       'p' || to_char(month, 'YYYYMMDD'), month, month + interval '1 month');
        month := month + interval '1 month';
    END LOOP;
    EXECUTE format('CREATE TABLE event_partitions.tail PARTITION OF events '
                   'FOR VALUES FROM (%L) TO (MAXVALUE)', month);
END
$$
"""
NAME_PARTITION_INDEXES = """
DO $$
DECLARE
    child record;
BEGIN
    FOR child IN
        SELECT index.relname AS index_name, parent.relname AS parent_name, part.relname AS partition_name
        FROM pg_inherits AS tables
        JOIN pg_class AS part ON part.oid = tables.inhrelid
        JOIN pg_index AS x ON x.indrelid = part.oid
        JOIN pg_class AS index ON index.oid = x.indexrelid
        JOIN pg_inherits AS indexes ON indexes.inhrelid = x.indexrelid
        JOIN pg_class AS parent ON parent.oid = indexes.inhparent
        WHERE tables.inhparent = 'events'::regclass
    LOOP
        EXECUTE format('ALTER INDEX event_partitions.%I RENAME TO %I', child.index_name,
                       child.parent_name || '_' || child.partition_name);
    END LOOP;
END
$$
"""

PARTITIONS = "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events'::regclass"


def _convert(create_table: str, *, partitioned: bool) -> None:
    # The old table steps aside (its triggers go with it; its indexes are dropped so their names are
    # free), the new one is built and filled, then the old one is dropped.
    for trigger in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER event_counts_hourly_{trigger} ON events")
    op.execute("ALTER TABLE events RENAME TO events_unpartitioned")
    op.execute("ALTER TABLE events_unpartitioned RENAME CONSTRAINT pk_events TO pk_events_unpartitioned")
    for name in INDEX_NAMES:
        op.execute(f"DROP INDEX {name}")
    op.execute(create_table)
    if partitioned:
        op.execute("CREATE SCHEMA event_partitions")
        op.execute(CREATE_PARTITIONS)
    # Indexes after the copy: one sort per index instead of a row-by-row insert into each.
    op.execute(f"INSERT INTO events ({COLUMNS}) SELECT {COLUMNS} FROM events_unpartitioned")
    for index in INDEXES:
        op.execute(index)
    if partitioned:
        op.execute(NAME_PARTITION_INDEXES)
    # The triggers after the copy: the copied rows are already counted in the rollups.
    for trigger in TRIGGERS:
        op.execute(trigger)
    op.execute("DROP TABLE events_unpartitioned")
    if not partitioned:
        op.execute("DROP SCHEMA event_partitions")  # empty now: its partitions went with the old table
        op.execute("ANALYZE events")
        return
    # Statistics for the partitions that received rows, as autovacuum would gather them. Not for the
    # empty ones: analysed, they would say "no pages", and plans would read them by sequential scan.
    bind = op.get_bind()
    for (partition,) in bind.exec_driver_sql(PARTITIONS).all():
        if bind.exec_driver_sql(f"SELECT EXISTS (SELECT FROM {partition})").scalar():
            op.execute(f"ANALYZE {partition}")


def upgrade() -> None:
    # No writer may slip a row into the old table between the copy and the drop.
    op.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    _convert(CREATE_PARTITIONED, partitioned=True)


def downgrade() -> None:
    op.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    _convert(CREATE_UNPARTITIONED, partitioned=False)
