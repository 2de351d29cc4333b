"""Time-ordered event ids: UUIDv7 (RFC 9562) made from the event's commit-order stamp.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# db/ids.py says why. The first 8 bytes: 48 bits of Unix milliseconds, the version (7), then the
# microseconds within that millisecond scaled to 12 bits (RFC 9562 section 6.2, method 3); the last 8
# are gen_random_uuid()'s, whose variant bits are already RFC 9562's. A plain SQL function, so
# PostgreSQL inlines it into the inserting statement. Frozen here: a changed generator is a new
# revision, not an edit of this one.
UUID7_AT = """
CREATE FUNCTION uuid7_at(stamp timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(overlay(uuid_send(gen_random_uuid()) PLACING int8send(
        (((extract(epoch FROM stamp) * 1000000)::bigint / 1000) << 16)
        | 28672
        | (((extract(epoch FROM stamp) * 1000000)::bigint % 1000) * 4096 / 1000)
    ) FROM 1 FOR 8), 'hex')::uuid
$$
"""


def upgrade() -> None:
    op.execute(UUID7_AT)
    # The service's inserts name the id (made from the row's stamp); this default is for anyone
    # writing rows by hand, so that they too get a version 7 id. Existing rows keep theirs.
    op.alter_column("events", "id", server_default=sa.text("uuid7_at(clock_timestamp())"))


def downgrade() -> None:
    op.alter_column("events", "id", server_default=sa.text("gen_random_uuid()"))
    op.execute("DROP FUNCTION uuid7_at(timestamptz)")
