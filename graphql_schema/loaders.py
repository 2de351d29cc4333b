"""DataLoaders: one SQL statement per batch of keys, each batch on its own pooled connection.

A single asyncpg connection cannot serve concurrently resolved fields, so every batch takes its
own connection, for its one statement (`database.replica_read()`: no BEGIN and COMMIT trips, on a
current read replica when there are any).
"""

import uuid
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from functools import cached_property

import asyncpg
from aiodataloader import DataLoader

from db.actors import actor_stats_by_email, latest_events_by_email
from db.engine import Database
from db.repository import get_events_by_ids

# (email, how many of its newest events)
ActorEventsKey = tuple[str, int]


class Loaders:
    """The loaders of one request; create a new one per request, never share it.

    They read from a current replica (Database.replica_read) unless `replica_reads` is off: for a
    request that wrote (a mutation's answer must show its own write) and for live events (the
    primary announced the event; a replica may not have it yet).
    """

    def __init__(self, database: Database, *, replica_reads: bool = True) -> None:
        self.database = database
        self.replica_reads = replica_reads

    # Each made when first asked for: most requests (a page of events, a write) use none of them,
    # and making all three cost every request 4.4 µs (timeit; 3% of a recordEvent in py-spy).
    @cached_property
    def actor_stats(self) -> DataLoader[str, asyncpg.Record | None]:
        return DataLoader(self._load_actor_stats)

    @cached_property
    def actor_events(self) -> DataLoader[ActorEventsKey, list[asyncpg.Record]]:
        return DataLoader(self._load_actor_events)

    @cached_property
    def event(self) -> DataLoader[uuid.UUID, asyncpg.Record | None]:
        return DataLoader(self._load_events)

    def _read(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return self.database.replica_read() if self.replica_reads else self.database.single_statement()

    async def _load_actor_stats(self, emails: Sequence[str]) -> list[asyncpg.Record | None]:
        async with self._read() as connection:
            rows = await actor_stats_by_email(connection, emails)
        by_email = {row["email"]: row for row in rows}
        return [by_email.get(email) for email in emails]

    async def _load_actor_events(self, keys: Sequence[ActorEventsKey]) -> list[list[asyncpg.Record]]:
        async with self._read() as connection:
            rows = await latest_events_by_email(connection, keys)
        by_key: dict[ActorEventsKey, list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            by_key[(row["wanted_email"], row["wanted_size"])].append(row)
        return [by_key.get(key, []) for key in keys]

    async def _load_events(self, event_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record | None]:
        async with self._read() as connection:
            rows = await get_events_by_ids(connection, event_ids)
        by_id = {row["id"]: row for row in rows}
        return [by_id.get(event_id) for event_id in event_ids]
