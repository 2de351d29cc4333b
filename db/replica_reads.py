"""Reads on a replica that the primary takes over when the replica fails under them.

`replica_read` (behind Database.replica_read and read_transaction) picks a current replica from the
ReplicaSet (db.replicas), or the primary when none is. On a replica, the block gets a `ReplicaRead`,
which stands in for the connection: a statement the replica fails (connection lost, server shut
down, recovery conflict) runs again on the primary, so a read never fails because a replica did, and
the replica is skipped until the monitor hears from it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar, cast

import asyncpg

from db.engine import CONNECTION_ERRORS, TRANSACTION_CONFLICTS, may_be_mid_statement, unavailable

if TYPE_CHECKING:
    from db.engine import Database
    from db.replicas import Replica, ReplicaSet

T = TypeVar("T")

# What makes a statement on a replica worth running again on the primary: the replica is gone or
# going, or it cancelled the statement to replay WAL (a recovery conflict is SQLSTATE 40001, or
# 40P01 for a buffer-pin deadlock). Statement timeouts are not here: the same statement on the
# primary would be as slow, and the request has already waited that long.
REPLICA_FAILURES: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, *TRANSACTION_CONFLICTS)
# Errors the block may see from the database, mapped to DatabaseUnavailable as the primary's are.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    asyncpg.QueryCanceledError,
    *TRANSACTION_CONFLICTS,
)


@asynccontextmanager
async def replica_read(
    replicas: ReplicaSet, database: Database, *, explicit_transaction: bool
) -> AsyncIterator[asyncpg.Connection]:
    """A connection on a current replica (or the primary) for a read; see Database.replica_read."""
    replica = replicas.pick()
    if replica is None:
        async with _on_primary(database, explicit_transaction) as connection:
            yield connection
        return
    session = ReplicaRead(replicas, database, replica, explicit_transaction=explicit_transaction)
    await session.open()
    try:
        # Not an asyncpg.Connection but stands in for one, as asyncpg's own pool proxy does.
        yield cast(asyncpg.Connection, session)
    except BaseException as error:
        await session.close(error)
        if isinstance(error, DATABASE_ERRORS):
            raise unavailable(error) from error
        raise
    else:
        await session.close(None)


def _on_primary(database: Database, explicit_transaction: bool) -> AbstractAsyncContextManager[Any]:
    return database.transaction() if explicit_transaction else database.single_statement()


class ReplicaRead:
    """Stands in for a connection during one read on a replica; the primary takes over on failure.

    Without a transaction every statement stands alone, so a failed one simply runs again on the
    primary (and the rest of the block stays there). In a transaction, the primary takes over only
    while the block has had nothing back yet: a later failure is the block's, as on the primary.
    """

    def __init__(
        self, replicas: ReplicaSet, database: Database, replica: Replica, *, explicit_transaction: bool
    ) -> None:
        self._replicas = replicas
        self._database = database
        self._replica = replica
        self._explicit_transaction = explicit_transaction
        self._connection: asyncpg.Connection | None = None  # on the replica, until it fails
        self._transaction: Any = None
        self._primary = AsyncExitStack()  # the primary's connection, once it has taken over
        self._on_primary = False
        self._answered = False

    @property
    def connection(self) -> asyncpg.Connection:
        """Where the block's statements go now."""
        assert self._connection is not None
        return self._connection

    async def open(self) -> None:
        """Take a replica connection (and BEGIN there); the primary's when the replica fails at it."""
        try:
            try:
                self._connection = await self._replica.connections.acquire(self._replicas.acquire_timeout_s)
            except REPLICA_FAILURES as error:
                await self._replicas.failed(self._replica, error)
                await self._to_primary()
                return
            if self._explicit_transaction:
                try:
                    self._transaction = self._connection.transaction()
                    await self._transaction.start()
                except REPLICA_FAILURES as error:
                    await self._leave_replica(error)
                    await self._to_primary()
        except BaseException as error:  # cancelled, or the primary failed too: give back what was taken
            await self.close(error)
            raise

    async def close(self, error: BaseException | None) -> None:
        """End the read: commit (or roll back) and release; the primary's errors are its own."""
        if self._on_primary:
            if error is None:
                await self._primary.aclose()
            else:
                await self._primary.__aexit__(type(error), error, error.__traceback__)
            return
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        if self._transaction is not None and not may_be_mid_statement(error):
            # Only reads happened: a replica failing to end them must not fail the read.
            with suppress(*REPLICA_FAILURES):
                if error is None:
                    await self._transaction.commit()
                else:
                    await self._transaction.rollback()
        await self._replica.connections.release(connection, error)

    async def run(
        self, statement: Callable[[asyncpg.Connection], Awaitable[T]], *, answers: bool = True
    ) -> T:
        """`statement` on the replica; on the primary instead when the replica fails and that is allowed.

        `answers` says whether the caller gets rows back (a cursor being opened does not).
        """
        if not self._on_primary:
            try:
                result = await statement(self.connection)
            except REPLICA_FAILURES as error:
                if self._explicit_transaction and self._answered:
                    raise
                await self._leave_replica(error)
                await self._to_primary()
            else:
                self._answered = self._answered or answers
                return result
        return await statement(self.connection)

    async def _leave_replica(self, error: BaseException) -> None:
        if isinstance(error, CONNECTION_ERRORS):
            await self._replicas.failed(self._replica, error)
        connection = self.connection
        if self._transaction is not None and not connection.is_closed():
            with suppress(*REPLICA_FAILURES, asyncpg.InterfaceError):
                await self._transaction.rollback()
        self._transaction = None
        await self._replica.connections.release(connection, error)
        self._connection = None

    async def _to_primary(self) -> None:
        primary = _on_primary(self._database, self._explicit_transaction)
        self._connection = await self._primary.enter_async_context(primary)
        self._on_primary = True

    # --- what the repository calls on a connection ---

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> list[asyncpg.Record]:
        return await self.run(lambda connection: connection.fetch(query, *args, **kwargs))

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> asyncpg.Record | None:
        return await self.run(lambda connection: connection.fetchrow(query, *args, **kwargs))

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self.run(lambda connection: connection.fetchval(query, *args, **kwargs))

    def cursor(self, query: str, *args: Any, **kwargs: Any) -> ReplicaCursor:
        return ReplicaCursor(self, query, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        # Anything else goes to the current connection as it is (no fallback).
        return getattr(self.connection, name)


class ReplicaCursor:
    """`connection.cursor(...)` for a ReplicaRead: opened again on the primary if that takes over."""

    def __init__(self, read: ReplicaRead, query: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._read = read
        self._query = query
        self._args = args
        self._kwargs = kwargs
        self._cursor: Any = None
        self._opened_on: asyncpg.Connection | None = None

    def __await__(self) -> Any:
        return self._start().__await__()

    async def _start(self) -> ReplicaCursor:
        await self._read.run(self._open_on, answers=False)
        return self

    async def _open_on(self, connection: asyncpg.Connection) -> Any:
        if self._opened_on is not connection:
            self._cursor = await connection.cursor(self._query, *self._args, **self._kwargs)
            self._opened_on = connection
        return self._cursor

    async def fetch(self, count: int, **kwargs: Any) -> list[asyncpg.Record]:
        async def fetch_on(connection: asyncpg.Connection) -> list[asyncpg.Record]:
            cursor = await self._open_on(connection)
            return await cursor.fetch(count, **kwargs)

        return await self._read.run(fetch_on)
