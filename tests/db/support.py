"""Helpers the database-layer tests share: events to write, and writing them."""

import uuid

from db.engine import Database
from db.repository import insert_events
from db.validation import NewEvent, parse_event_payload
from tests.support import valid_event


def unique(prefix: str) -> str:
    """A component (or other name) no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_event(component: str, message: str = "m", environment: str = "production") -> NewEvent:
    return parse_event_payload(valid_event(component=component, message=message, environment=environment))


async def record(
    database: Database, component: str, count: int = 1, environment: str = "production"
) -> list[uuid.UUID]:
    """`count` events in one statement (its own transaction); their ids in order."""
    async with database.single_statement() as connection:
        rows = await insert_events(
            connection, [new_event(component, f"e{i}", environment) for i in range(count)]
        )
    return [row["id"] for row in rows]
