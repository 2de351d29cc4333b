"""The one database set-up every entry point shares: embedded or external, reachable, migrated.

`serve`, `migrate`, `keys`, `prune` and the app's lifespan all enter `prepared_database`; they differ
only in whether an external database is migrated too (the embedded one always is, since nobody
else can migrate it), which is the caller's one argument.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg

from api.settings import Settings
from db.embedded import start_embedded
from db.engine import CONNECTION_ERRORS, POOLER_HINT, POOLER_REFUSAL, PoolMode, session_settings
from db.migrate import upgrade_to_head_async
from db.urls import as_libpq_url, masked_url

log = logging.getLogger(__name__)

# A wait shorter than this is not worth a line: the usual start is quick and should stay silent.
ANNOUNCE_WAIT_AFTER_S = 2.0
RETRY_INTERVAL_S = 0.5


class DatabaseNotReady(Exception):
    """The configured database cannot be used; the message is one line, with any password masked."""


@asynccontextmanager
async def prepared_database(
    settings: Settings,
    *,
    migrate_external: bool,
    announce: Callable[[str], None] = log.info,
) -> AsyncIterator[str]:
    """Yield the URL of a reachable database at the newest schema revision, for the block's length.

    Without a configured database the embedded server in ACTIVITY_DATA_DIR is started (or attached
    to), migrated, and released when the block ends. A configured (external) one is waited for up
    to STARTUP_WAIT_S and migrated only when `migrate_external` is true: its schema belongs to
    whoever runs it (`activity-service migrate`, `serve --migrate`, MIGRATE_ON_START).
    `announce` receives the few lines an operator should see (where the data lives, a long wait).
    Raises DatabaseNotReady when an external database never answers or refuses us.
    """
    url = settings.external_database_url
    if url is not None:
        await wait_for_database(url, settings.startup_wait_s, announce, settings.database_pool_mode)
        direct = settings.database_direct_url
        if direct is not None:  # behind a transaction pooler: migrations need a session of their own
            await wait_for_database(direct, settings.startup_wait_s, announce)
        if migrate_external:
            await upgrade_to_head_async(direct or url, settings.event_partition_interval)
        yield url
        return
    # Blocking (a cold start takes seconds), hence the thread.
    embedded = await asyncio.to_thread(start_embedded, settings.activity_data_dir)
    try:
        announce(f"embedded PostgreSQL, data in {embedded.data_dir}")
        await upgrade_to_head_async(embedded.url, settings.event_partition_interval)
        yield embedded.url
    finally:
        # Explicitly, never left to pgserver's atexit hook: uvicorn re-raises SIGTERM after its
        # shutdown, so atexit hooks do not run and the server would be orphaned.
        embedded.release()


async def wait_for_database(
    url: str,
    timeout_s: float,
    announce: Callable[[str], None] = log.info,
    pool_mode: PoolMode = PoolMode.SESSION,
) -> None:
    """Return once `url` accepts a connection; raise DatabaseNotReady after `timeout_s` of trying.

    A database that is merely slow to come up (compose, a restart) is waited for, and the wait is
    announced once it has lasted a couple of seconds; wrong credentials or a missing database fail
    at once, since waiting cannot fix them.
    """
    started = time.monotonic()
    announced = False
    while True:
        waited = time.monotonic() - started
        try:
            # With the startup parameters the pool will send: a transaction pooler taken for the
            # server refuses them here, in one clear line, not at the first request.
            connection = await asyncpg.connect(
                as_libpq_url(url),
                timeout=max(timeout_s - waited, RETRY_INTERVAL_S),
                server_settings=session_settings(0, pool_mode),
            )
            await connection.close()
            return
        except asyncpg.InvalidPasswordError as error:
            raise DatabaseNotReady(f"database {masked_url(url)} refused the credentials: {error}") from error
        except asyncpg.InvalidCatalogNameError as error:
            raise DatabaseNotReady(f"database {masked_url(url)} does not exist: {error}") from error
        except asyncpg.ProtocolViolationError as error:
            if POOLER_REFUSAL not in str(error):
                raise DatabaseNotReady(f"database {masked_url(url)} broke the protocol: {error}") from error
            raise DatabaseNotReady(f"database {masked_url(url)} said {error}: {POOLER_HINT}") from error
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as error:
            waited = time.monotonic() - started
            if waited >= timeout_s:
                reason = str(error) or type(error).__name__
                raise DatabaseNotReady(
                    f"cannot reach the database at {masked_url(url)} (waited {waited:.0f} s): {reason}"
                ) from error
            if not announced and waited >= ANNOUNCE_WAIT_AFTER_S:
                announce(f"waiting up to {timeout_s:.0f} s for the database at {masked_url(url)} ...")
                announced = True
            await asyncio.sleep(RETRY_INTERVAL_S)
