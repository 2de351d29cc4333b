"""The connection pool and the one place that owns transactions."""

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from enum import StrEnum
from typing import TYPE_CHECKING

import asyncpg

from db.urls import as_libpq_url

if TYPE_CHECKING:
    from db.replicas import ReplicaSet

log = logging.getLogger(__name__)


class DatabaseUnavailable(Exception):
    """The database could not do the work now; nothing was committed, so callers may retry later.

    Raised when it cannot be reached, answers too slowly, or rolls a transaction back to break a
    deadlock or a serialization conflict.
    """


# What either door tells a client when DatabaseUnavailable is raised (the details go to the log).
UNAVAILABLE_MESSAGE = "The database is unavailable right now; retry shortly."


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

# The server rolled the transaction back to break a deadlock or keep SERIALIZABLE honest: nothing
# was written, and the same request retried is expected to succeed (PostgreSQL says as much).
TRANSACTION_CONFLICTS: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


def unavailable(error: BaseException) -> DatabaseUnavailable:
    """The DatabaseUnavailable a driver error means (one of CONNECTION_ERRORS, a cancel or a conflict)."""
    if isinstance(error, asyncpg.QueryCanceledError):
        # statement_timeout fired: the database is too slow to answer right now.
        return DatabaseUnavailable(f"statement cancelled: {error}")
    if isinstance(error, TRANSACTION_CONFLICTS):
        return DatabaseUnavailable(f"transaction rolled back: {error}")
    return DatabaseUnavailable(str(error) or type(error).__name__)


class PoolMode(StrEnum):
    """What hands our connections to the server (DATABASE_POOL_MODE)."""

    # The server itself, or a pooler that gives each client connection one server session.
    SESSION = "session"
    # A pooler that gives each transaction whichever server connection is free (PgBouncer's
    # pool_mode = transaction). Nothing may outlive a transaction: asyncpg's cache of statements
    # prepared by name is off (PgBouncer before 1.21 cannot route them), and only the startup
    # parameters PgBouncer passes on are sent; statement_timeout and jit are then the role's or the
    # database's (`ALTER ROLE ... SET statement_timeout = ...`, `... SET jit = off`).
    TRANSACTION = "transaction"


def session_settings(statement_timeout_ms: int, pool_mode: PoolMode = PoolMode.SESSION) -> dict[str, str]:
    """The startup parameters every connection here sends (those a transaction pooler passes on)."""
    passed_on = {"application_name": "activity-service", "timezone": "UTC"}
    if pool_mode is PoolMode.TRANSACTION:
        return passed_on
    return {
        **passed_on,
        "statement_timeout": str(statement_timeout_ms),
        # Every statement here is short. The planner misjudges the row counts of the recording
        # statement's CTEs (db.live_feed.notifications) by orders of magnitude, and where
        # PostgreSQL has JIT (Debian's does) it spent ~200 ms compiling each insert.
        "jit": "off",
    }


# What PgBouncer answers a startup parameter it does not pass on (in transaction or statement mode).
POOLER_REFUSAL = "unsupported startup parameter"
POOLER_HINT = (
    "DATABASE_URL looks like a pooler in transaction mode (PgBouncer): set DATABASE_POOL_MODE=transaction "
    "and DATABASE_DIRECT_URL"
)


async def keep_session(connection: asyncpg.Connection) -> None:
    """Release a connection with no reset query of its own: one round trip less per request.

    asyncpg still rolls back a transaction left open and drops listeners before this runs. Its
    default reset (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) undoes session
    state that nothing here makes on a pooled connection: settings are `SET LOCAL` or startup
    parameters, locks are transaction locks, cursors live in transactions, and the one LISTEN is
    on a connection of its own (db.live_feed.hub). Keep it that way: any of those on a pooled
    connection would now outlive the request that made it. The one state a block can leave without
    making it, a statement cut off between its prepare and its execution, never reaches this:
    such a connection is closed instead (`may_be_mid_statement`).
    """


async def open_pool(
    url: str,
    *,
    min_size: int,
    max_size: int,
    statement_timeout_ms: int,
    connect_timeout_s: float,
    pool_mode: PoolMode = PoolMode.SESSION,
) -> asyncpg.Pool:
    """An asyncpg pool on `url` with the session settings every connection here uses."""
    try:
        return await asyncpg.create_pool(
            as_libpq_url(url),
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout_s,
            # The client gives up a little after the server would have cancelled the
            # statement, so a dead or black-holed server cannot hang a request forever.
            command_timeout=statement_timeout_ms / 1000 + 5 if statement_timeout_ms else None,
            server_settings=session_settings(statement_timeout_ms, pool_mode),
            reset=keep_session,
            **({"statement_cache_size": 0} if pool_mode is PoolMode.TRANSACTION else {}),
        )
    except asyncpg.ProtocolViolationError as error:
        if POOLER_REFUSAL in str(error):
            raise DatabaseUnavailable(f"{error}: {POOLER_HINT}") from error
        raise


class Database:
    """An asyncpg pool: repository functions get a connection from `transaction()`.

    With read replicas (db.replicas), reads that may be a little stale ask `replica_read()` or
    `read_transaction()` instead; everything else (writes, idempotency checks, the live feed,
    readiness) stays on the primary.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        url: str,
        acquire_timeout_s: float = 5.0,
        replicas: "ReplicaSet | None" = None,
        direct_url: str | None = None,
    ) -> None:
        self.connections = FairPool(pool)  # how the service takes the pool's connections
        self.url = url
        self.acquire_timeout_s = acquire_timeout_s
        self.replicas = replicas
        # Where a session of our own is needed (the live feed's LISTEN): the server itself, which
        # is `url` unless that is a transaction pooler.
        self.direct_url = direct_url or url

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool (its connections are taken through `connections`, in turn)."""
        return self.connections.pool

    @pool.setter
    def pool(self, pool: asyncpg.Pool) -> None:
        # Replaced only by tests that wrap it (counting statements, killing backends); the turns
        # stay those of the pool it wraps.
        self.connections.pool = pool

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        statement_timeout_ms: int = 30_000,
        connect_timeout_s: float = 5.0,
        acquire_timeout_s: float = 5.0,
        replica_urls: Sequence[str] = (),
        replica_max_lag_ms: int = 1_000,
        pool_mode: PoolMode = PoolMode.SESSION,
        direct_url: str | None = None,
    ) -> "Database":
        """Open a pool on `url`; raise DatabaseUnavailable with the reason when it cannot.

        With `replica_urls`, a pool on each replica too and the monitor of their lag; a replica that
        cannot be reached now is not an error (it is skipped until it answers).
        """
        try:
            pool = await open_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                statement_timeout_ms=statement_timeout_ms,
                connect_timeout_s=connect_timeout_s,
                pool_mode=pool_mode,
            )
        except CONNECTION_ERRORS as error:
            raise DatabaseUnavailable(str(error) or type(error).__name__) from error
        if not replica_urls:
            return cls(pool, url, acquire_timeout_s, direct_url=direct_url)
        from db.replicas import ReplicaSet  # only when configured; it imports this module

        try:
            replicas = await ReplicaSet.open(
                url,
                replica_urls,
                max_lag_ms=replica_max_lag_ms,
                min_size=min_size,
                max_size=max_size,
                statement_timeout_ms=statement_timeout_ms,
                connect_timeout_s=connect_timeout_s,
                acquire_timeout_s=acquire_timeout_s,
            )
            replicas.start()
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url, acquire_timeout_s, replicas, direct_url)

    async def close(self) -> None:
        """Close every connection; waits for those in use to be released."""
        if self.replicas is not None:
            await self.replicas.close()
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction: committed when the block ends, rolled back on error."""
        async with self._connection(explicit_transaction=True) as connection:
            yield connection

    @asynccontextmanager
    async def single_statement(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for one statement that commits on its own (no BEGIN, no COMMIT round trips).

        For a read, one round trip. For a write that is a single statement, the commit happens
        inside the server as the statement ends, so locks the statement takes (db.event_clock) are
        held for no network round trip, and the caller hears back only once it is committed.
        """
        async with self._connection(explicit_transaction=False) as connection:
            yield connection

    def replica_read(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """`single_statement()` for a read that may be stale by up to REPLICA_MAX_LAG_MS.

        On a replica that is that current, else on the primary; a replica failing mid-read is left
        for the primary, statement by statement, so the read never fails because a replica did.
        Without replicas this is `single_statement()` itself.
        """
        if self.replicas is None:
            return self.single_statement()
        return self.replicas.read(self, explicit_transaction=False)

    def read_transaction(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """`transaction()` for reads that may be stale by up to REPLICA_MAX_LAG_MS (one snapshot).

        A replica that fails before the block has read anything is left for the primary; after
        that, its failure is the block's (a snapshot cannot be continued elsewhere). Without
        replicas this is `transaction()` itself.
        """
        if self.replicas is None:
            return self.transaction()
        return self.replicas.read(self, explicit_transaction=True)

    @asynccontextmanager
    async def _connection(self, *, explicit_transaction: bool) -> AsyncIterator[asyncpg.Connection]:
        try:
            # Bounded: with every connection busy or the server down, the caller gets a 503 soon.
            async with self.connections.connection(self.acquire_timeout_s) as connection:
                if explicit_transaction:
                    async with connection.transaction():
                        yield connection
                else:
                    yield connection
        except (*CONNECTION_ERRORS, asyncpg.QueryCanceledError, *TRANSACTION_CONFLICTS) as error:
            raise unavailable(error) from error


async def release(pool: asyncpg.Pool, connection: asyncpg.Connection) -> None:
    """Hand `connection` back to `pool`; one that fails its reset is dropped, with a warning.

    Release runs after the block's outcome is settled: a COMMIT that succeeded is an
    acknowledged write, and a connection that dies afterwards (the reset query finds it gone)
    must not turn that answer into an error. A block that failed keeps its own error.
    """
    try:
        await pool.release(connection)
    except Exception as error:
        log.warning("dropping a database connection that failed on release: %r", error)
        # asyncpg terminates a connection whose reset failed, which detaches the proxy (then
        # InterfaceError); terminating here covers any other path, so the pool opens a new one.
        with suppress(asyncpg.InterfaceError):
            connection.terminate()


class FairPool:
    """`pool`'s connections for callers in the order they asked: first come, first served.

    asyncpg's own queue is not fair under load. A caller it wakes for a released connection may
    find that a caller arriving meanwhile took it, and then queues again at the back; at c=64 on
    10 connections, some requests waited that way over and over (GraphQL `events` p99 288 ms with
    a p50 of 35 ms). An asyncio.Semaphore admits its waiters in order and lets no newcomer pass
    one, so with it in front the pool always has a connection ready for whoever it admits: p99
    fell to 78 ms (README, "Latest figures"). Its timeout needs no task of its own either, where
    asyncpg's `acquire(timeout=)` wraps every acquire in one (`wait_for`, ~40 µs a read here).

    Anything that takes connections from `pool` directly (not through this) still gets one, from
    asyncpg's queue, as before.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._turns = asyncio.Semaphore(pool.get_max_size())

    async def acquire(self, timeout_s: float) -> asyncpg.Connection:
        """A connection, once every earlier caller has had one; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            await self._turns.acquire()
            try:
                return await self.pool.acquire()
            except BaseException:
                self._turns.release()
                raise

    @asynccontextmanager
    async def connection(self, timeout_s: float) -> AsyncIterator[asyncpg.Connection]:
        """`acquire` for a block, and `release` after it with whatever ended it."""
        connection = await self.acquire(timeout_s)
        ended_by: BaseException | None = None
        try:
            yield connection
        except BaseException as error:
            ended_by = error
            raise
        finally:
            await self.release(connection, ended_by)

    async def release(self, connection: asyncpg.Connection, ended_by: BaseException | None = None) -> None:
        """Give `connection` back (as `release` does), and the turn to the next caller.

        `ended_by` is what ended the block that used it, if anything did: a block interrupted in
        the middle of a statement closes its connection instead (`may_be_mid_statement`).
        """
        try:
            if may_be_mid_statement(ended_by):
                connection.terminate()  # the pool opens a new one when it next needs one
            await release(self.pool, connection)
        finally:
            self._turns.release()


def may_be_mid_statement(ended_by: BaseException | None) -> bool:
    """Whether a block that ended with `ended_by` may have left its connection partway through a
    statement, which no reset would notice: a cancellation, a timeout, an interpreter exit.

    asyncpg prepares a statement with Parse, Describe and Flush, and sends the Sync only with the
    Bind and Execute that follow. A task cancelled between the two (a websocket client that left
    while its subscription was starting) leaves the server in an implicit transaction that holds
    its locks (AccessShare on `events`) until that connection's next statement, and the protocol
    reports it idle, so asyncpg's release sees nothing to roll back. asyncpg's own reset query used
    to end it; without it (`keep_session`), an idle pool kept the lock and blocked every TRUNCATE,
    partition change and prune behind it (found by CI, 2026-11-30). An error the server answered
    (a PostgresError) or one raised by our own code between statements leaves the protocol in step.
    """
    if ended_by is None:
        return False
    return not isinstance(ended_by, Exception) or isinstance(ended_by, TimeoutError)
