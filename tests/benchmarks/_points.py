"""Each measured point with its reference figures, as rows of the report.

A point runs, for each concurrency, its references first and then the service, back to back, so
that both see the same machine load and the same table state: every write point deletes what it
wrote and vacuums afterwards (`restore_seed_state`), so each starts from the seed.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.benchmarks import _pgbench, _postgraphile
from tests.benchmarks._database import SeededDatabase, restore_seed_state, wait_until_quiet
from tests.benchmarks._pgbench import PgbenchResult, run_pgbench
from tests.benchmarks._processes import RunningService, TreeSampler, running_afternoon
from tests.benchmarks._report import Row, ms, number, p99_verdict, verdict
from tests.benchmarks._workload import (
    EVENTS_QUERY,
    batch_bodies,
    create_event_requests,
    filtered_get_requests,
    graphql_query_requests,
    post_requests,
    record_event_requests,
)
from tests.benchmarks._wrk import Request, WrkResult, run_wrk, write_script

MB = 1e6


@dataclass
class Peer:
    """PostGraphile, running, or why not."""

    base_url: str | None = None
    pid: int | None = None
    operations: _postgraphile.Operations | None = None
    skipped: str | None = None


@dataclass
class Bench:
    """Everything a point needs."""

    wrk: str
    workdir: Path
    database: SeededDatabase
    service: RunningService
    peer: Peer
    connections: Sequence[int]
    duration_s: float
    warmup_s: float

    def drive(
        self,
        base_url: str,
        pid: int,
        name: str,
        requests: Sequence[Request],
        c: int,
        *,
        graphql: bool = False,
    ) -> tuple[WrkResult, TreeSampler]:
        """wrk against `base_url` (warm-up first, not counted); the result, and the server's RSS and CPU."""
        script = write_script(self.workdir / f"{name}.lua", requests, graphql=graphql)
        if self.warmup_s > 0:
            run_wrk(self.wrk, base_url, script, c, self.warmup_s)
            wait_until_quiet(self.database.url)
        with TreeSampler(pid) as sampler:
            result = run_wrk(self.wrk, base_url, script, c, self.duration_s)
        wait_until_quiet(self.database.url)  # requests wrk abandoned at its deadline
        return result, sampler

    def service_run(
        self, name: str, requests: Sequence[Request], c: int, graphql: bool = False
    ) -> tuple[WrkResult, TreeSampler]:
        return self.drive(self.service.base_url, self.service.pid, name, requests, c, graphql=graphql)

    def pgbench(self, script: str, c: int) -> PgbenchResult:
        return run_pgbench(self.database.url, script, c, self.duration_s, self.workdir)

    def restore(self) -> None:
        restore_seed_state(self.database)

    @property
    def top_c(self) -> int:
        return max(self.connections)


def _wrk_row(
    point: str, c: int, result: WrkResult, server: TreeSampler, unit: str = "req/s", scale: int = 1
) -> Row:
    return Row(
        point=point,
        c=str(c),
        throughput=f"{number(result.good_per_s * scale)} {unit}",
        p50_ms=ms(result.p50_ms),
        p99_ms=ms(result.p99_ms),
        errors=number(result.errors),
        server_rss_mb=number(server.peak / MB),
        server_cpu=f"{server.cores:.2f}",
        cpu_us=number(server.cores * 1e6 / (result.good_per_s * scale)) if result.good_per_s else "n/a",
    )


def _pgbench_row(point: str, c: int, result: PgbenchResult, rows_per_tx: int = 1) -> Row:
    throughput = f"{number(result.tps)} tps"
    if rows_per_tx > 1:
        throughput = f"{number(result.tps * rows_per_tx)} rows/s"
    return Row(
        point=point, c=str(c), throughput=throughput, p50_ms=ms(result.p50_ms), p99_ms=ms(result.p99_ms),
        errors=number(result.failed), result="reference",
    )  # fmt: skip


def _judge(
    row: Row,
    bench: Bench,
    c: int,
    result: WrkResult,
    measured: float,
    reference: float,
    label: str,
    target: float,
) -> Row:
    """Fill in the reference, the ratio and the verdicts of a service row."""
    ratio = measured / reference if reference else float("nan")
    row.reference = f"{label} {number(reference)}"
    row.ratio = f"{ratio:.2f}x"
    row.target = f">= {target:.1f}x"
    row.result = verdict(ratio >= target)
    if c == bench.top_c:
        row.p99_target = p99_verdict(result.p99_ms)
    return row


def _skipped(point: str, reason: str) -> Row:
    return Row(point=point, result=f"skipped: {reason}")


def point_get(bench: Bench) -> list[Row]:
    """GET /api/events/?component=..&email=.. (about 5 rows) vs pgbench's same SELECT."""
    rows = []
    db = bench.database
    script = _pgbench.select_script(db.five_row_pairs, newest_first_limit=None)
    for c in bench.connections:
        reference = bench.pgbench(script, c)
        rows.append(
            _pgbench_row("pgbench: SELECT .. WHERE component AND email ORDER BY created_at, id", c, reference)
        )
        requests = filtered_get_requests(db.five_row_pairs)
        afternoon = _afternoon_row(bench, "afternoon", "GET", requests, c)
        rows.append(afternoon[0])
        result, server = bench.service_run("get", requests, c)
        row = _wrk_row("GET /api/events/?component=..&email=.. (5 rows)", c, result, server)
        rows.append(_judge(row, bench, c, result, result.good_per_s, reference.tps, "pgbench tps", 0.5))
        rows.append(_versus_afternoon(row, result, afternoon[1]))
    return rows


def _afternoon_row(
    bench: Bench, name: str, method: str, requests: Sequence[Request], c: int
) -> tuple[Row, float]:
    """The afternoon reference (FastAPI + asyncpg, 2 workers) on the same requests: its row and req/s."""
    with running_afternoon(bench.database.url, 2, bench.workdir) as afternoon:
        result, server = bench.drive(afternoon.base_url, afternoon.pid, f"{name}-{c}", requests, c)
    bench.restore()
    row = _wrk_row(
        f"afternoon reference (FastAPI + asyncpg, 2 workers): {method} /api/events/", c, result, server
    )
    row.result = "reference"
    return row, result.good_per_s


def _versus_afternoon(row: Row, result: WrkResult, afternoon_per_s: float) -> Row:
    """The service's row judged against the afternoon reference (target: 2x)."""
    ratio = result.good_per_s / afternoon_per_s if afternoon_per_s else float("nan")
    return Row(
        point=f"{row.point} vs the afternoon reference",
        c=row.c,
        reference=f"afternoon req/s {number(afternoon_per_s)}",
        ratio=f"{ratio:.2f}x",
        target=">= 2.0x",
        result=verdict(ratio >= 2.0),
    )


def point_graphql_events(bench: Bench) -> list[Row]:
    """GraphQL events(filter:{component,email}, first:50) vs PostGraphile (pgbench shown for scale)."""
    rows = []
    db = bench.database
    script = _pgbench.select_script(db.fifty_row_pairs, newest_first_limit=50)
    peer = bench.peer
    for c in bench.connections:
        sql = bench.pgbench(script, c)
        rows.append(_pgbench_row("pgbench: the same SELECT .. newest first LIMIT 51", c, sql))
        peer_rps = None
        if peer.operations is not None and peer.base_url and peer.pid:
            requests = graphql_query_requests(peer.operations.list_query, db.fifty_row_pairs)
            result, server = bench.drive(peer.base_url, peer.pid, "pgl-events", requests, c, graphql=True)
            rows.append(
                _wrk_row(
                    "PostGraphile: allEvents(condition: {component, email}, first: 50)", c, result, server
                )
            )
            rows[-1].result = "reference"
            peer_rps = result.good_per_s
        result, server = bench.service_run(
            "gql-events", graphql_query_requests(EVENTS_QUERY, db.fifty_row_pairs), c, True
        )
        row = _wrk_row("GraphQL events(filter: {component, email}, first: 50)", c, result, server)
        if peer_rps is None:
            row.target, row.result = ">= 1.0x PostGraphile", f"skipped: {peer.skipped}"
            rows.append(row)
        else:
            rows.append(_judge(row, bench, c, result, result.good_per_s, peer_rps, "PostGraphile req/s", 1.0))
    return rows


def point_post(bench: Bench) -> list[Row]:
    """POST /api/events/ vs pgbench single-row INSERT ... RETURNING."""
    rows = []
    for c in bench.connections:
        reference = bench.pgbench(_pgbench.INSERT_ONE, c)
        bench.restore()
        rows.append(_pgbench_row("pgbench: single-row INSERT .. RETURNING", c, reference))
        afternoon = _afternoon_row(bench, "afternoon-post", "POST", post_requests(), c)
        rows.append(afternoon[0])
        result, server = bench.service_run("post", post_requests(), c)
        bench.restore()
        row = _wrk_row("POST /api/events/", c, result, server)
        rows.append(_judge(row, bench, c, result, result.good_per_s, reference.tps, "pgbench tps", 1.0))
        rows.append(_versus_afternoon(row, result, afternoon[1]))
    return rows


def _batch_shape(base_url: str) -> tuple[str | None, str]:
    """Which body POST /api/events/batch takes (a JSON array or {"events": [...]}), or why none."""
    statuses = []
    for shape in ("array", "object"):
        answer = httpx.post(
            f"{base_url}/api/events/batch", content=batch_bodies(shape, count=1)[0],
            headers={"Content-Type": "application/json"}, timeout=60,
        )  # fmt: skip
        if answer.status_code in (404, 405):
            return None, "endpoint missing"
        if 200 <= answer.status_code < 300:
            return shape, ""
        statuses.append(str(answer.status_code))
    return None, f'endpoint refused both a JSON array and {{"events": [...]}} ({", ".join(statuses)})'


def point_batch(bench: Bench) -> list[Row]:
    """POST /api/events/batch, 1,000 events per request, vs pgbench's 1,000-row INSERT ... SELECT."""
    shape, reason = _batch_shape(bench.service.base_url)
    body = {"array": "a JSON array", "object": '{"events": [...]}', None: "-"}[shape]
    point = f"POST /api/events/batch (1,000 events per request, body {body})"
    bench.restore()
    rows = []
    for c in bench.connections:
        reference = bench.pgbench(_pgbench.INSERT_THOUSAND, c)
        bench.restore()
        rows.append(
            _pgbench_row("pgbench: INSERT .. SELECT FROM generate_series(1, 1000)", c, reference, 1000)
        )
        reference_rows = reference.tps * 1000
        if shape is None:
            rows.append(Row(point=point, c=str(c), target=">= 0.8x", result=f"skipped: {reason}"))
            continue
        requests = [Request("POST", "/api/events/batch", body) for body in batch_bodies(shape)]
        result, server = bench.service_run("batch", requests, c)
        bench.restore()
        row = _wrk_row(point, c, result, server, unit="events/s", scale=1000)
        rows.append(
            _judge(row, bench, c, result, result.good_per_s * 1000, reference_rows, "pgbench rows/s", 0.8)
        )
    return rows


def point_graphql_record(bench: Bench) -> list[Row]:
    """GraphQL recordEvent vs PostGraphile's createEvent."""
    rows = []
    peer = bench.peer
    for c in bench.connections:
        peer_rps = None
        if peer.operations is not None and peer.base_url and peer.pid:
            requests = create_event_requests(peer.operations.create_mutation)
            result, server = bench.drive(peer.base_url, peer.pid, "pgl-create", requests, c, graphql=True)
            bench.restore()
            rows.append(_wrk_row("PostGraphile: createEvent", c, result, server))
            rows[-1].result = "reference"
            peer_rps = result.good_per_s
        result, server = bench.service_run("gql-record", record_event_requests(), c, graphql=True)
        bench.restore()
        row = _wrk_row("GraphQL recordEvent", c, result, server)
        if peer_rps is None:
            row.target, row.result = ">= 1.5x PostGraphile", f"skipped: {peer.skipped}"
            rows.append(row)
        else:
            rows.append(_judge(row, bench, c, result, result.good_per_s, peer_rps, "PostGraphile req/s", 1.5))
    return rows
