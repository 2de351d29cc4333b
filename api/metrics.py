"""Prometheus metrics: what the service counts, how each worker records it, and `GET /metrics`.

One set of metrics per process (prometheus-client's registry is process-wide), made on first use.
With several workers, prometheus-client runs in multiprocess mode: `serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before any worker starts (api.metrics_workers), each
worker writes its values to its own files there, and whichever worker answers a scrape adds up
every worker's files. The environment decides the mode when prometheus_client is first imported, so
this module is imported by the app (in the workers), never by the supervisor.

db/ knows nothing of metrics: it calls plain callables with plain numbers (the group committer's
and the live feed's `on_...` attributes, db.writes), and pools and subscribers are read as they are.
Gauges of state are sampled every SAMPLE_INTERVAL_S, and by the worker answering a scrape at once:
in multiprocess mode another worker's gauge can only be as fresh as its last sample.
"""

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar
from functools import cache
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from api.settings import Settings
from db import writes
from db.engine import Database
from db.group_commit import GroupCommitter
from db.live_feed.hub import EventHub
from graphql_schema import gate
from rest.responses import message_response

METRICS_PATH = "/metrics"

# How stale another worker's gauges (pool, subscribers) may be in a scrape.
SAMPLE_INTERVAL_S = 1.0

# A single request is ~1 ms here; a streamed export of 100,000 events ~0.6 s.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Powers of two up to GROUP_COMMIT_MAX_ROWS' default (256) and beyond, for a raised setting.
BATCH_EVENT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# GROUP_COMMIT_MAX_WAIT_MS is 2 ms by default; longer waits are time queued behind a slow write.
WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Any other method a client invents is counted as "other": labels must stay a bounded set.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# The door the running request came through ("rest" or "graphql"), set by the request middleware
# and read when db.writes reports what it recorded: the count per door needs no change to either.
request_door: ContextVar[str] = ContextVar("request_door", default="other")


class ServiceMetrics:
    """This process's metrics and the observers that feed them."""

    def __init__(self) -> None:
        self.http_requests = Counter(
            "activity_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
        )
        self.http_duration = Histogram(
            "activity_http_request_duration_seconds",
            "From a request's arrival to the end of its answer, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
        )
        self.events_recorded = Counter(
            "activity_events_recorded",
            "Events recorded (idempotent replays excluded), by the door they came through.",
            ["door"],
        )
        self.group_commit_batch_events = Histogram(
            "activity_group_commit_batch_events",
            "Events per group-commit batch (single-event writes sharing one INSERT and COMMIT).",
            buckets=BATCH_EVENT_BUCKETS,
        )
        self.group_commit_wait = Histogram(
            "activity_group_commit_wait_seconds",
            "How long the oldest event of each group-commit batch waited before it was written.",
            buckets=WAIT_BUCKETS,
        )
        # livesum: the live workers' values added up; a dead worker's files are dropped
        # (api.metrics_workers), so its connections and subscribers stop counting.
        self.pool_in_use = Gauge(
            "activity_db_pool_connections_in_use",
            "Pooled database connections lent out right now (the live feed's own connection aside).",
            multiprocess_mode="livesum",
        )
        self.pool_open = Gauge(
            "activity_db_pool_connections_open",
            "Pooled database connections open right now, busy or idle.",
            multiprocess_mode="livesum",
        )
        self.live_subscribers = Gauge(
            "activity_live_subscribers",
            "Live event subscriptions (GraphQL eventRecorded) open right now.",
            multiprocess_mode="livesum",
        )
        # Per configured read replica (db.replicas): a bounded label set, named by masked URL.
        self.replica_in_use = Gauge(
            "activity_db_replica_in_use",
            "1 while reads may go to this read replica (current within REPLICA_MAX_LAG_MS), else 0.",
            ["replica"],
            multiprocess_mode="livemin",
        )
        self.replica_lag = Gauge(
            "activity_db_replica_lag_seconds",
            "How far this read replica's replay was behind the primary when last measured "
            "(+Inf while it does not answer or is further behind than measured).",
            ["replica"],
            multiprocess_mode="livemax",
        )
        self.feed_lag = Histogram(
            "activity_live_feed_lag_seconds",
            "From an event's created_at to its fan-out to live subscribers; one observation per fan-out "
            "round, of its oldest event (rounds happen only while a process has subscribers).",
            buckets=LAG_BUCKETS,
        )
        self.cost_refusals = Counter(
            "activity_graphql_cost_limit_refusals",
            "GraphQL operations refused by the cost limit (QUERY_TOO_COMPLEX), before any of them ran.",
        )
        # Label lookups cost more than the increments: each label combination is looked up once.
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._door_series: dict[str, Counter] = {}
        self._sources: list[tuple[Database, EventHub]] = []

    # --- observers (called on hot paths: plain arithmetic, no I/O) ---

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request answered."""
        if method not in KNOWN_METHODS:
            method = "other"
        series = self._request_series.get((method, route, status))
        if series is None:
            series = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
            self._request_series[(method, route, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def observe_recorded(self, events: int) -> None:
        """`events` newly recorded by the running request (db.writes)."""
        door = request_door.get()
        series = self._door_series.get(door)
        if series is None:
            series = self._door_series[door] = self.events_recorded.labels(door)
        series.inc(events)

    def observe_group_commit(self, events: int, waited_s: float) -> None:
        """One group-commit batch written (GroupCommitter.on_batch)."""
        self.group_commit_batch_events.observe(events)
        self.group_commit_wait.observe(waited_s)

    def observe_feed_round(self, events: int, lag_s: float) -> None:
        """One round of events fanned out to live subscribers (EventHub.on_round)."""
        self.feed_lag.observe(max(lag_s, 0.0))

    def observe_cost_refusal(self) -> None:
        """One operation refused by the GraphQL cost limit (graphql_schema.gate)."""
        self.cost_refusals.inc()

    # --- gauges of state ---

    def watch(self, database: Database, event_hub: EventHub) -> None:
        """Count `database`'s pool and `event_hub`'s subscribers in the gauges from now on."""
        self._sources.append((database, event_hub))

    def unwatch(self, database: Database, event_hub: EventHub) -> None:
        """Stop counting them (the lifespan is ending)."""
        self._sources.remove((database, event_hub))

    def sample(self) -> None:
        """Set the gauges from the pools and live feeds this process runs."""
        in_use = open_connections = subscribers = 0
        for database, event_hub in self._sources:
            size = database.pool.get_size()
            open_connections += size
            in_use += size - database.pool.get_idle_size()
            subscribers += event_hub.subscriber_count
            if database.replicas is not None:
                usable = database.replicas.in_use()
                for replica in database.replicas.replicas:
                    self.replica_in_use.labels(replica.name).set(1 if replica in usable else 0)
                    lag = replica.lag_s if replica.problem is None and replica.lag_s is not None else None
                    self.replica_lag.labels(replica.name).set(float("inf") if lag is None else lag)
        self.pool_in_use.set(in_use)
        self.pool_open.set(open_connections)
        self.live_subscribers.set(subscribers)


@cache
def service_metrics() -> ServiceMetrics:
    """The process's metrics, made on first use; db.writes and the gate report to them from then on."""
    metrics = ServiceMetrics()
    writes.on_recorded = metrics.observe_recorded
    gate.on_cost_refused = metrics.observe_cost_refusal
    return metrics


@asynccontextmanager
async def observing(
    database: Database, event_hub: EventHub, event_writer: GroupCommitter
) -> AsyncIterator[None]:
    """While open: the writer and the feed report to the metrics, and the gauges are kept fresh."""
    metrics = service_metrics()
    metrics.watch(database, event_hub)
    event_writer.on_batch = metrics.observe_group_commit
    event_hub.on_round = metrics.observe_feed_round
    sampler = asyncio.create_task(_sample_forever(metrics), name="metrics-sampler")
    try:
        yield
    finally:
        sampler.cancel()
        with suppress(asyncio.CancelledError):
            await sampler
        metrics.unwatch(database, event_hub)
        metrics.sample()


async def _sample_forever(metrics: ServiceMetrics) -> None:
    while True:
        metrics.sample()
        await asyncio.sleep(SAMPLE_INTERVAL_S)


def multiprocess_mode() -> bool:
    """Whether values live in PROMETHEUS_MULTIPROC_DIR's files (decided when prometheus_client loaded)."""
    return values.ValueClass is not values.MutexValue


def render_metrics() -> bytes:
    """Every worker's metrics in the Prometheus text format."""
    if multiprocess_mode():
        # A fresh registry per scrape, as prometheus-client prescribes: it reads every worker's files.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def metrics_router(settings: Settings) -> APIRouter:
    """`GET /metrics`: open, or behind METRICS_TOKEN when it is set; never behind API keys."""
    router = APIRouter()
    token = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None

    @router.get(METRICS_PATH, include_in_schema=False)
    async def metrics(authorization: Annotated[str | None, Header()] = None) -> Response:
        """The service's metrics in the Prometheus text format."""
        if token is not None and not _bearer_matches(authorization, token):
            return message_response(
                "The metrics need a token: send Authorization: Bearer <METRICS_TOKEN>.",
                401,
                {"WWW-Authenticate": "Bearer"},
            )
        service_metrics().sample()
        # Reading every worker's files takes a few milliseconds: not on the event loop.
        body = await asyncio.to_thread(render_metrics)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


def _bearer_matches(authorization: str | None, token: bytes) -> bool:
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    # Compared in constant time, as API keys are.
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token)
