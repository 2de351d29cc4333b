"""The connection pool and the one place that owns transactions."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from db.urls import as_libpq_url


class DatabaseUnavailable(Exception):
    """The database could not be reached (or answered too slowly); callers may retry later."""


# What asyncpg and the OS raise when the server is down, restarting or unreachable.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
)


class Database:
    """An asyncpg pool: repository functions get a connection from `transaction()`."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self.pool = pool
        self.url = url

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        statement_timeout_ms: int = 30_000,
        connect_timeout_s: float = 10.0,
    ) -> "Database":
        """Open a pool on `url`; raise DatabaseUnavailable with the reason when it cannot."""
        try:
            pool = await asyncpg.create_pool(
                as_libpq_url(url),
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout_s,
                server_settings={
                    "application_name": "activity-service",
                    "statement_timeout": str(statement_timeout_ms),
                    "timezone": "UTC",
                },
            )
        except CONNECTION_ERRORS as error:
            raise DatabaseUnavailable(str(error) or type(error).__name__) from error
        return cls(pool, url)

    async def close(self) -> None:
        """Close every connection; waits for those in use to be released."""
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction: committed when the block ends, rolled back on error."""
        try:
            connection = await self.pool.acquire()
        except CONNECTION_ERRORS as error:
            raise DatabaseUnavailable(str(error) or type(error).__name__) from error
        try:
            async with connection.transaction():
                yield connection
        except CONNECTION_ERRORS as error:
            raise DatabaseUnavailable(str(error) or type(error).__name__) from error
        finally:
            await self.pool.release(connection)
