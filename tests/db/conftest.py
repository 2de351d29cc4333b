"""Fixtures the database-layer tests share."""

from collections.abc import AsyncIterator

import pytest

from db.engine import Database
from db.live_feed.hub import EventHub


@pytest.fixture
async def hub(database: Database) -> AsyncIterator[EventHub]:
    """A hub of the test's own: it LISTENs from now on, so no earlier test's events reach it."""
    event_hub = EventHub(database)
    await event_hub.start()
    try:
        yield event_hub
    finally:
        await event_hub.stop()


@pytest.fixture
async def own_database(database_url: str) -> AsyncIterator[Database]:
    """A small pool of the test's own, so a connection a test kills or closes never touches the app's."""
    database = await Database.connect(database_url, min_size=1, max_size=2)
    try:
        yield database
    finally:
        await database.close()
