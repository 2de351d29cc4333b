"""The schema Alembic builds is the schema the models declare."""

import asyncio
import uuid
from datetime import timedelta

import asyncpg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from db.migrate import alembic_config
from db.models import SQLModel
from db.urls import as_sqlalchemy_url


def fetched(url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    """The rows of each statement, run in turn on one new connection."""

    async def run() -> list[list[tuple[object, ...]]]:
        connection = await asyncpg.connect(url)
        try:
            return [[tuple(row) for row in await connection.fetch(sql)] for sql in statements]
        finally:
            await connection.close()

    return asyncio.run(run())


def test_models_and_migration_head_agree(database_url: str) -> None:
    async def differences() -> list[object]:
        engine = create_async_engine(as_sqlalchemy_url(database_url))
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": True}),
                        SQLModel.metadata,
                    )
                )
        finally:
            await engine.dispose()

    assert asyncio.run(differences()) == []


def test_event_ids_migration_keeps_existing_ids_and_downgrades(empty_database: str) -> None:
    """0006: events written before keep their ids, new ones get version 7; downgrade restores version 4."""
    config = alembic_config(empty_database)

    async def insert_by_hand() -> uuid.UUID:
        connection = await asyncpg.connect(empty_database)
        try:
            return await connection.fetchval(
                "INSERT INTO events (component, environment, message, data) "
                "VALUES ('order', 'production', 'by hand', '{}') RETURNING id"
            )
        finally:
            await connection.close()

    async def stored_ids() -> set[uuid.UUID]:
        connection = await asyncpg.connect(empty_database)
        try:
            return {row["id"] for row in await connection.fetch("SELECT id FROM events")}
        finally:
            await connection.close()

    command.upgrade(config, "0005")
    before = asyncio.run(insert_by_hand())
    assert before.version == 4
    command.upgrade(config, "head")
    assert asyncio.run(stored_ids()) == {before}
    assert asyncio.run(insert_by_hand()).version == 7
    command.downgrade(config, "0005")
    assert asyncio.run(insert_by_hand()).version == 4
    command.upgrade(config, "head")
    assert asyncio.run(insert_by_hand()).version == 7


def test_rollups_migration_backfills_existing_events_and_downgrades(empty_database: str) -> None:
    """0007: the hourly rollups start equal to counting the events already stored; downgrade drops them."""
    config = alembic_config(empty_database)

    seed = (
        "INSERT INTO events (component, environment, message, data, created_at) "
        "SELECT (ARRAY['order', 'billing'])[1 + n % 2], (ARRAY['production', 'staging', 'dev'])[1 + n % 3], "
        "'seeded', '{}', timestamptz '2026-03-28 20:00+00' + n * interval '97 seconds' "
        "FROM generate_series(1, 3000) AS n"
    )
    from_events = (
        "SELECT date_trunc('hour', created_at, 'UTC'), component, environment, count(*), "
        "min(created_at), max(created_at) FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    kept = "SELECT * FROM event_counts_hourly ORDER BY 1, 2, 3"
    has_rollups = "SELECT to_regclass('event_counts_hourly') IS NOT NULL"

    command.upgrade(config, "0006")
    fetched(empty_database, seed)
    command.upgrade(config, "head")
    expected, backfilled = fetched(empty_database, from_events, kept)
    assert len(expected) > 100 and backfilled == expected
    command.downgrade(config, "0006")
    assert fetched(empty_database, has_rollups, seed) == [[(False,)], []]  # and writes work without it
    command.upgrade(config, "head")
    expected, backfilled = fetched(empty_database, from_events, kept)
    assert sum(row[3] for row in backfilled) == 6000 and backfilled == expected


def test_event_clock_turns_migration_continues_the_clock_both_ways(empty_database: str) -> None:
    """0009: the clock's last stamp moves from the row to the sequence and back; no stamp repeats."""
    config = alembic_config(empty_database)
    ahead = "timestamptz '2100-01-01 00:00+00'"  # a clock ahead of the machine's: it must carry on

    command.upgrade(config, "0008")
    fetched(empty_database, f"UPDATE event_clock SET last_at = {ahead}")
    command.upgrade(config, "head")
    # The last of three stamps right after the row's last one:
    reserved = f"SELECT event_clock_reserve(3), {ahead} + interval '3 microseconds'"
    [[(first, turned)]] = fetched(empty_database, reserved)
    assert first == turned
    command.downgrade(config, "0008")
    [[(kept,)]] = fetched(empty_database, "SELECT last_at FROM event_clock")
    assert kept == first
    command.upgrade(config, "head")
    [[(after,)]] = fetched(empty_database, "SELECT event_clock_reserve(1)")
    assert after == first + timedelta(microseconds=1)
