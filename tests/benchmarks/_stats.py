"""Counts over time: a 30-day daily series of one component, and what the rollup trigger costs writers.

The query is timed three ways on the seeded table: in the database from the rollups (the path
db.stats takes) and, for reference, by counting the events; and end to end, GraphQL `eventStats`
and GET /api/events/stats over HTTP to the running service. The trigger's write cost is the
repository's own insert statements (a 1,000-row batch, a single row), each committed on its own,
with the rollup trigger enabled and disabled, alternating, in the same run on the same table.
"""

import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import httpx

from db.filters import EventFilter
from db.repository import insert_event, insert_events
from db.stats import Bucket, StatsRequest, event_stats, events_query, rollup_query
from db.validation import NewEvent
from tests.benchmarks._database import SeededDatabase

ZONE = "Europe/Berlin"
GRAPHQL = (
    "query($c: String!, $from: DateTime!, $to: DateTime!) { eventStats(filter: {component: $c, from: $from, "
    'to: $to}, bucket: DAY, timeZone: "Europe/Berlin", first: 500) { rows { bucket count } truncated } }'
)
TRIGGERS = ("event_counts_hourly_insert", "event_counts_hourly_delete")


@dataclass
class StatsTimings:
    component: str
    matching_events: int
    rows: int
    source: str
    call_ms: list[float]  # the whole db.stats call (from the rollups), time-zone check included
    rollup_ms: list[float]  # its rollup statement alone
    events_ms: list[float]  # the same series counted from the events, for reference


@dataclass
class WriteCost:
    batch_on_ms: list[float]
    batch_off_ms: list[float]
    single_on_ms: list[float]
    single_off_ms: list[float]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.99 * len(values)) - 1)] if values else float("nan")


def series_request(database: SeededDatabase, component: str) -> StatsRequest:
    to = database.seeded_at.replace(minute=0, second=0, microsecond=0)
    event_filter = EventFilter(component=component, created_from=to - timedelta(days=30), created_to=to)
    return StatsRequest(event_filter, (), Bucket.DAY, ZONE, first=500)


async def _time_queries(database: SeededDatabase, component: str, runs: int) -> StatsTimings:
    request = series_request(database, component)
    connection = await asyncpg.connect(database.url)
    try:
        result = await event_stats(connection, request)  # warms the time zone cache and the plan
        rollup_ms: list[float] = []
        events_ms: list[float] = []
        for sql_and_values, times in ((rollup_query(request), rollup_ms), (events_query(request), events_ms)):
            sql, values = sql_and_values
            statement = await connection.prepare(sql)
            for _ in range(runs):
                started = time.perf_counter()
                await statement.fetch(*values)
                times.append((time.perf_counter() - started) * 1000)
        call_ms = []
        for _ in range(runs):
            started = time.perf_counter()
            await event_stats(connection, request)
            call_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await connection.close()
    return StatsTimings(
        component=component,
        matching_events=sum(row.count for row in result.rows),
        rows=len(result.rows),
        source=result.source,
        call_ms=call_ms,
        rollup_ms=rollup_ms,
        events_ms=events_ms,
    )


def time_queries(database: SeededDatabase, component: str, runs: int = 50) -> StatsTimings:
    return asyncio.run(_time_queries(database, component, runs))


def time_http(
    base_url: str, database: SeededDatabase, component: str, runs: int = 50
) -> tuple[list[float], list[float]]:
    """Milliseconds per GraphQL and per REST request for the same series, sequential, after a warm-up."""
    request = series_request(database, component)
    event_filter = request.event_filter
    assert event_filter.created_from is not None and event_filter.created_to is not None
    variables = {
        "c": component,
        "from": event_filter.created_from.isoformat(),
        "to": event_filter.created_to.isoformat(),
    }
    params = {
        "component": component,
        "from_date": variables["from"],
        "bucket": "day",
        "time_zone": ZONE,
        "first": "500",
    }
    graphql_ms: list[float] = []
    rest_ms: list[float] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(5):
            client.post("/graphql", json={"query": GRAPHQL, "variables": variables}).raise_for_status()
            client.get("/api/events/stats", params=params).raise_for_status()
        for _ in range(runs):
            started = time.perf_counter()
            body = client.post("/graphql", json={"query": GRAPHQL, "variables": variables}).json()
            graphql_ms.append((time.perf_counter() - started) * 1000)
            assert "errors" not in body, body
            started = time.perf_counter()
            client.get("/api/events/stats", params=params).raise_for_status()
            rest_ms.append((time.perf_counter() - started) * 1000)
    return graphql_ms, rest_ms


def _event(index: int) -> NewEvent:
    return NewEvent("order", "production", "bench@example.com", f"rollup cost {index}", {"i": index})


async def _measure_write_cost(url: str, rounds: int, singles: int) -> WriteCost:
    cost = WriteCost([], [], [], [])
    batch = [_event(index) for index in range(1_000)]
    connection = await asyncpg.connect(url)
    try:
        for round_index in range(rounds):
            # Alternate which goes first, so drift over the run (autovacuum, caches) hits both alike.
            for enabled in (True, False) if round_index % 2 == 0 else (False, True):
                if not enabled:
                    for trigger in TRIGGERS:
                        await connection.execute(f"ALTER TABLE events DISABLE TRIGGER {trigger}")
                started = time.perf_counter()
                records = await insert_events(connection, batch)
                (cost.batch_on_ms if enabled else cost.batch_off_ms).append(
                    (time.perf_counter() - started) * 1000
                )
                ids = [record["id"] for record in records]
                single_times = cost.single_on_ms if enabled else cost.single_off_ms
                for index in range(singles):
                    started = time.perf_counter()
                    ids.append((await insert_event(connection, _event(index)))["id"])
                    single_times.append((time.perf_counter() - started) * 1000)
                # Deleted in the state they were written in, so the rollups stay right.
                await connection.execute("DELETE FROM events WHERE id = ANY($1::uuid[])", ids)
                if not enabled:
                    for trigger in TRIGGERS:
                        await connection.execute(f"ALTER TABLE events ENABLE TRIGGER {trigger}")
    finally:
        await connection.close()
    return cost


def measure_write_cost(url: str, rounds: int = 20, singles: int = 100) -> WriteCost:
    """Insert timings with the rollup trigger on and off (no service may be writing meanwhile)."""
    return asyncio.run(_measure_write_cost(url, rounds, singles))
