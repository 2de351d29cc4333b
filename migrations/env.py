"""Alembic environment: async engine on asyncpg, one advisory lock so concurrent starters queue."""

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db.models import SQLModel
from db.urls import as_sqlalchemy_url

# Any constant works; it only has to be the same for every process migrating this database.
MIGRATION_LOCK_ID = 0x61637476

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        # Several workers (or a worker and `activity-service migrate`) may start at once:
        # the transaction-scoped lock makes the second one wait, then find nothing to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


def _database_url() -> str:
    """The URL db/migrate.py passed in, or (for developers' alembic commands) the configured one."""
    url = context.config.attributes.get("url")
    if url:
        return url
    from api.settings import Settings

    configured = Settings().external_database_url
    if configured is None:
        raise SystemExit("set DATABASE_URL (or POSTGRES_HOST ...) to run alembic commands")
    return as_sqlalchemy_url(configured)


async def _run_online() -> None:
    url = _database_url()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
asyncio.run(_run_online())
