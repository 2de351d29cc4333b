"""Retention: prune deletes exactly the old events, in batches, while writes go on."""

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import typer

from api.cli import parse_age
from db.engine import Database
from db.repository import insert_event
from db.retention import prune_events_before
from db.validation import NewEvent
from tests.support import ROOT, service_env

NEW_EVENT = NewEvent("order", "production", "ade@example.com", "fresh", {})


async def _seed_aged(database_url: str, count: int, age: timedelta) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO events (component, environment, email, message, data, created_at) "
            "SELECT 'order', 'production', 'ade@example.com', 'old ' || n, '{}'::jsonb, "
            "now() - $2::interval - n * interval '1 second' FROM generate_series(1, $1) AS n",
            count,
            age,
        )
    finally:
        await connection.close()


async def _count(database: Database, query: str) -> int:
    async with database.transaction() as connection:
        return await connection.fetchval(query)


async def test_prune_deletes_only_events_older_than_the_cutoff(database: Database, database_url: str) -> None:
    await _seed_aged(database_url, 1_234, timedelta(days=100))
    await _seed_aged(database_url, 10, timedelta(days=10))
    deleted = await prune_events_before(database, datetime.now(UTC) - timedelta(days=90), batch_size=100)
    assert deleted == 1_234
    assert await _count(database, "SELECT count(*) FROM events") == 10


async def test_prune_runs_alongside_concurrent_writes_without_losing_them(
    database: Database, database_url: str
) -> None:
    await _seed_aged(database_url, 5_000, timedelta(days=100))

    async def write(count: int) -> None:
        for _ in range(count):
            async with database.transaction() as connection:
                await insert_event(connection, NEW_EVENT)

    cutoff = datetime.now(UTC) - timedelta(days=90)
    deleted, _ = await asyncio.gather(prune_events_before(database, cutoff, batch_size=250), write(200))
    assert deleted == 5_000
    assert await _count(database, "SELECT count(*) FROM events WHERE message = 'fresh'") == 200
    assert await _count(database, "SELECT count(*) FROM events") == 200


@pytest.mark.slow
def test_prune_command_reports_how_many_it_deleted(database_url: str) -> None:
    asyncio.run(_seed_aged(database_url, 7, timedelta(days=3)))
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "prune", "--older-than", "2d", "--batch-size", "3"],
        cwd=ROOT,
        env=service_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "deleted 7 events" in result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("1d12h", timedelta(hours=36))],
)
def test_prune_ages_are_read_as_durations(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d", "-3d", "3 days", "3x"])
def test_prune_refuses_ages_it_cannot_read(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_age(text)
