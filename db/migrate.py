"""Run Alembic programmatically, so `activity-service migrate` and startup need no alembic.ini."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from db.partitions import PartitionInterval, maintain_partitions_at
from db.urls import as_libpq_url, as_sqlalchemy_url

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations and at `database_url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option: configparser would choke on `%` in a password.
    config.attributes["url"] = as_sqlalchemy_url(database_url)
    return config


def upgrade_to_head(
    database_url: str, partition_interval: PartitionInterval = PartitionInterval.MONTH
) -> None:
    """Bring the database to the newest revision and make the partitions of events ahead (blocking;
    safe to run from several processes)."""
    command.upgrade(alembic_config(database_url), "head")
    # Not a migration: which partitions exist depends on today's date and the configured interval.
    asyncio.run(maintain_partitions_at(as_libpq_url(database_url), partition_interval))


async def upgrade_to_head_async(
    database_url: str, partition_interval: PartitionInterval = PartitionInterval.MONTH
) -> None:
    """The same from async code: Alembic's env.py runs its own loop, so it gets a thread."""
    await asyncio.to_thread(upgrade_to_head, database_url, partition_interval)
