"""Index the component-and-email filter in list order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # "This component, this actor, newest first" is the documented dashboard query (REST
    # `?component=..&email=..`, GraphQL `filter: {component, email}`). With only the single-column
    # indexes PostgreSQL combined two bitmaps and sorted every match (5-30 ms on 1M events); with
    # the order key behind both columns it is one index range that stops after the page.
    op.create_index(
        "ix_events_component_email_created_at_id", "events", ["component", "email", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_events_component_email_created_at_id", table_name="events")
