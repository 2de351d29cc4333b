"""Create the events table and the indexes its readers need.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("component", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    # Every list is ordered by (created_at, id), oldest or newest first, and GraphQL pages are
    # keyset cursors on that pair; from_date / from / to are ranges on created_at. One btree
    # serves the unfiltered stream, both orders and the date ranges without a sort.
    op.create_index("ix_events_created_at_id", "events", ["created_at", "id"])
    # The equality filters (component, environment, email) lead their own index, with the order
    # key behind them, so "this component, newest first, 50 rows" is an index range scan that
    # stops after 50 rows instead of sorting every match.
    op.create_index("ix_events_component_created_at_id", "events", ["component", "created_at", "id"])
    op.create_index("ix_events_environment_created_at_id", "events", ["environment", "created_at", "id"])
    op.create_index("ix_events_email_created_at_id", "events", ["email", "created_at", "id"])
    # GraphQL `search` is full-text over the message with the 'simple' configuration (no
    # stemming: component names and error codes must match as typed); GIN makes it indexable.
    op.create_index(
        "ix_events_message_fts",
        "events",
        [sa.text("to_tsvector('simple', message)")],
        postgresql_using="gin",
    )
    # GraphQL `dataContains` is JSONB containment (@>); jsonb_path_ops is the smaller, faster
    # GIN operator class for exactly that operator.
    op.create_index(
        "ix_events_data_path_ops",
        "events",
        ["data"],
        postgresql_using="gin",
        postgresql_ops={"data": "jsonb_path_ops"},
    )


def downgrade() -> None:
    op.drop_table("events")
