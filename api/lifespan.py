"""Startup and shutdown: embedded server (when none is configured), migrations, pool, live feed, writer."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from api.database_setup import prepared_database
from api.metrics import observing
from api.settings import Settings
from db.api_keys import KeyVerifier
from db.engine import Database
from db.group_commit import GroupCommitter
from db.live_feed.hub import EventHub
from db.partitions import partition_upkeep

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open everything the app needs on startup; release it, in reverse, on shutdown."""
    settings: Settings = app.state.settings
    async with AsyncExitStack() as resources:
        # Left last: spans still buffered are sent before the process ends (api.telemetry).
        if (tracer_provider := getattr(app.state, "tracer_provider", None)) is not None:
            resources.callback(tracer_provider.shutdown)
        # Entered first, so it is left last: the embedded server outlives the pool and the feed.
        url = await resources.enter_async_context(
            prepared_database(settings, migrate_external=settings.migrate_on_start)
        )
        # Said once per process at startup: whether a client without a key will be let in is the
        # first thing an operator wants to confirm, and nothing else in the log shows it.
        log.info("API keys required: %s (AUTH_REQUIRED)", "yes" if settings.auth_required else "no")
        database = await Database.connect(
            url,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            connect_timeout_s=settings.db_connect_timeout_s,
            acquire_timeout_s=settings.db_acquire_timeout_s,
            replica_urls=settings.database_replica_urls,
            replica_max_lag_ms=settings.replica_max_lag_ms,
            pool_mode=settings.database_pool_mode,
            direct_url=settings.database_direct_url,
        )
        resources.push_async_callback(database.close)
        if database.replicas is not None:
            # Which servers reads may go to is the first thing to check when a read looks stale.
            log.info(
                "read replicas: %s (reads go to one less than %d ms behind, else to the primary)",
                ", ".join(replica.name for replica in database.replicas.replicas),
                settings.replica_max_lag_ms,
            )
        app.state.database = database
        # Partitions of events ahead of time, now and hourly (db.partitions); stopped before the pool.
        await resources.enter_async_context(partition_upkeep(database, settings.event_partition_interval))
        # After the pool (it fetches oversize events with it), stopped before the pool closes.
        event_hub = EventHub(database, max_pending_events=settings.subscription_queue_size)
        await event_hub.start()
        resources.push_async_callback(event_hub.stop)
        app.state.event_hub = event_hub
        app.state.key_verifier = KeyVerifier(database, settings.api_key_cache_s)
        # Registered last so it stops first: on shutdown the writes still queued are committed
        # (and announced to live subscribers) while the pool and the feed are still open.
        event_writer = GroupCommitter(
            database,
            max_rows=settings.group_commit_max_rows,
            max_wait_s=settings.group_commit_max_wait_ms / 1000,
        )
        await event_writer.start()
        resources.push_async_callback(event_writer.stop)
        app.state.event_writer = event_writer
        # The writer and the feed report to the metrics; the pool and subscriber gauges are sampled.
        await resources.enter_async_context(observing(database, event_hub, event_writer))
        # Everything made at startup (imports, schema, pool) lives as long as the process: move it
        # out of the collector's reach, so full collections stay short while requests run (a
        # 100k-event stream otherwise saw ~60 ms pauses walking ~130k startup objects).
        gc.collect()
        gc.freeze()
        yield
