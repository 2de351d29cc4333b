"""The `events` table as SQLModel declares it; Alembic's migrations must agree with it (a test checks)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

# Explicit constraint names, so migrations name things the same way on every server.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Event(SQLModel, table=True):
    """One thing that happened. `id` and `created_at` are the server's, never the client's."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_created_at_id", "created_at", "id"),
        Index("ix_events_component_created_at_id", "component", "created_at", "id"),
        Index("ix_events_environment_created_at_id", "environment", "created_at", "id"),
        Index("ix_events_email_created_at_id", "email", "created_at", "id"),
        Index("ix_events_component_email_created_at_id", "component", "email", "created_at", "id"),
        Index(
            "ix_events_message_fts",
            text("to_tsvector('simple', message)"),
            postgresql_using="gin",
        ),
        Index(
            "ix_events_data_path_ops",
            "data",
            postgresql_using="gin",
            postgresql_ops={"data": "jsonb_path_ops"},
        ),
        # Partitioned by created_at (migration 0008); the partitions are db.partitions' business, in
        # their own schema. PostgreSQL requires the partition key in the primary key, hence (id, created_at).
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    # A UUIDv7 made from created_at by the inserting statement (db/ids.py); the default, the same
    # generator on the clock's time, is for rows written by hand.
    id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(Uuid, primary_key=True, server_default=text("uuid7_at(clock_timestamp())")),
    )
    component: str = Field(sa_column=Column(Text, nullable=False))
    environment: str = Field(sa_column=Column(Text, nullable=False))
    email: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    message: str = Field(sa_column=Column(Text, nullable=False))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), primary_key=True, server_default=func.now()),
    )


class ApiKey(SQLModel, table=True):
    """A client's credential: only a hash of the key is kept; the key itself is shown once."""

    __tablename__ = "api_keys"

    # The public part of a key (`ak_<id>_<secret>`): found by it, then the hash is compared.
    id: str = Field(sa_column=Column(Text, primary_key=True))
    name: str = Field(sa_column=Column(Text, nullable=False))
    key_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    scopes: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class IdempotencyKey(SQLModel, table=True):
    """A client's `Idempotency-Key`: which request it first came with and the event it made."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    # Keys are per caller: the API key's id, or "" when the request carried none.
    owner: str = Field(sa_column=Column(Text, primary_key=True))
    key: str = Field(sa_column=Column(Text, primary_key=True))
    request_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # Null only while the first request is still being written (its row lock is held meanwhile).
    event_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class EventCountHourly(SQLModel, table=True):
    """Events per UTC hour, component and environment: kept by triggers on `events` (migration 0007)."""

    __tablename__ = "event_counts_hourly"
    __table_args__ = (Index("ix_event_counts_hourly_component_hour", "component", "hour"),)

    hour: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    component: str = Field(sa_column=Column(Text, primary_key=True))
    environment: str = Field(sa_column=Column(Text, primary_key=True))
    count: int = Field(sa_column=Column(BigInteger, nullable=False))
    first_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
