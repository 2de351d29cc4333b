"""Killing a pooled connection's backend between its COMMIT and its release, for real."""

import asyncio
import threading
from typing import Any

import asyncpg
import pytest

from db.engine import Database


def _terminate_while_the_loop_is_blocked(database_url: str, pid: int) -> None:
    """Kill backend `pid` and wait until it is gone, without letting the calling event loop run.

    The loop must not run meanwhile: it would read the server's goodbye, and asyncpg would then
    know the connection is closed before anyone uses it again. Blocked, the loop first hears of
    the drop when the connection is next used or handed out, the way a connection lost between
    COMMIT and release is found in production.
    """

    async def terminate() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            # With a timeout (PostgreSQL 14+) it returns only once the backend has exited.
            assert await connection.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await connection.close()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(terminate())
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


class KillingPool:
    """The pool, except that release first kills the connection's backend (after its COMMIT)."""

    def __init__(self, pool: asyncpg.Pool, database_url: str) -> None:
        self._pool = pool
        self._database_url = database_url
        self.kills = 0
        self.killed_pids: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    async def release(self, connection: Any, **kwargs: Any) -> None:
        pid = connection.get_server_pid()
        _terminate_while_the_loop_is_blocked(self._database_url, pid)
        self.kills += 1
        self.killed_pids.append(pid)
        await self._pool.release(connection, **kwargs)


def kill_before_release(
    database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> KillingPool:
    """Make every release of `database` first kill its connection's backend, until the test ends."""
    killing = KillingPool(database.pool, database_url)
    monkeypatch.setattr(database, "pool", killing)
    return killing
