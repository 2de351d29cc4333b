"""The event clock: one row whose lock orders every event's created_at by commit.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # db/event_clock.py says why: every inserting statement takes this row's lock and stamps its
    # events after the last stamp handed out, so created_at follows commit order.
    op.create_table(
        "event_clock",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id", name=op.f("ck_event_clock_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_clock")),
    )
    # Starts after every event already stored, so the order continues across the upgrade.
    op.execute(
        "INSERT INTO event_clock (id, last_at) SELECT true, coalesce(max(created_at), now()) FROM events"
    )


def downgrade() -> None:
    op.drop_table("event_clock")
