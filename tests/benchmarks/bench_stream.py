"""How the unfiltered GET /api/events/ behaves on a big table: time, first byte, memory, liveness.

    python -m tests.benchmarks.bench_stream [--events 10000 100000] [--repeat 5] [--database-url URL]

For each N: a fresh database on a real PostgreSQL (embedded in a temporary folder unless
--database-url names a server where we may CREATE DATABASE), migrated to head, N events seeded in
one INSERT ... SELECT, then the real service (`python -m api.cli serve`, one worker, default
settings) in a subprocess. The unfiltered GET is then measured --repeat times (the table shows
medians) while threads watch: one polls the server's VmRSS every ~10 ms throughout, one asks
/api/health in a loop during each GET (p50/p99 over all of them). A script, not a test: pytest
never collects it (no test_ prefix, no test functions).
"""

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from api.settings import Settings
from db.migrate import upgrade_to_head
from tests.benchmarks._database import fresh_database, postgres_server, run_sql
from tests.support import free_port, service_env, stop_process, wait_until_healthy

RSS_POLL_S = 0.01
MIB = 1024 * 1024

# Realistic sizes: ~60-character messages, ~20-character emails (10% none), a ~150-byte JSON
# object; one event a second, so the stream's order is the insertion order.
SEED_EVENTS = """
INSERT INTO events (component, environment, email, message, data, created_at)
SELECT
    (ARRAY['order', 'payment', 'auth', 'search', 'inventory', 'shipping'])[1 + i % 6],
    (ARRAY['production', 'staging', 'development'])[1 + i % 3],
    CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' || (i % 5000) || '@example.com' END,
    (ARRAY['order failed', 'payment declined', 'login succeeded', 'search timed out',
           'stock level low'])[1 + i % 5] || ': request ' || md5(i::text),
    jsonb_build_object(
        'age', 18 + i % 60,
        'request_id', md5(i::text || 'request'),
        'duration_ms', (i * 37) % 5000,
        'retry', i % 3 = 0,
        'tags', jsonb_build_array('web', 'v2')
    ),
    timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
FROM generate_series(1, $1::int) AS i
"""


@dataclass
class Run:
    """One measured GET."""

    total_s: float
    first_byte_s: float
    body_bytes: int
    verified: bool
    health: list[float]  # /api/health latencies of requests sent while the GET streamed


@dataclass
class Result:
    """All runs for one N, on one server process."""

    events: int
    seed_s: float
    runs: list[Run]
    rss_baseline: int
    rss_peak: int
    rss_samples: int
    hwm_growth: int | None
    health_idle: list[float]

    @property
    def health_during(self) -> list[float]:
        return [latency for run in self.runs for latency in run.health]

    @property
    def verified(self) -> bool:
        return all(run.verified for run in self.runs)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest sample with at least `fraction` of all samples at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else math.nan


def proc_status_kib(pid: int, field: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"{field} not in /proc/{pid}/status")


class RssSampler(threading.Thread):
    """Polls a process's resident set size until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, proc_status_kib(self.pid, "VmRSS"))
            self.samples += 1
            self.stop.wait(RSS_POLL_S)


class HealthProber(threading.Thread):
    """Asks /api/health back to back (a short pause between) on its own connection until stopped."""

    def __init__(self, base_url: str, pause_s: float) -> None:
        super().__init__(daemon=True)
        self.base_url, self.pause_s = base_url, pause_s
        self.timings: list[tuple[float, float]] = []  # (started at, latency)
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                ok = client.get("/api/health").status_code == 200
                self.timings.append((started, time.perf_counter() - started))
                self.failures += not ok
                self.stop.wait(self.pause_s)


def seed(url: str, events: int) -> float:
    """Insert `events` rows and analyse the table (as autovacuum would have); returns seconds."""
    started = time.perf_counter()
    run_sql(url, (SEED_EVENTS, events), "VACUUM ANALYZE events")
    return time.perf_counter() - started


@contextmanager
def running_server(database_url: str) -> Iterator[tuple[str, int]]:
    """The real service, one worker, logs to a file (a full pipe would stall it); yields (URL, pid).

    It runs from an empty folder so a developer's .env cannot change what is measured.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-stream-cwd-") as folder:
        log_path = Path(folder) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
                cwd=folder,
                env=service_env(DATABASE_URL=database_url),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                base_url = f"http://127.0.0.1:{port}"
                try:
                    wait_until_healthy(base_url, process, 60)
                except RuntimeError as error:
                    raise RuntimeError(f"{error}\n{log_path.read_text()}") from error
                yield base_url, process.pid
            finally:
                stop_process(process)


def measure(server_url: str, events: int, repeat: int, health_pause_s: float) -> Result:
    """Seed a fresh database, start the service, stream everything `repeat` times."""
    with fresh_database(server_url, "stream") as url:
        upgrade_to_head(url)
        seed_s = seed(url, events)
        with running_server(url) as (base_url, pid), httpx.Client(base_url=base_url, timeout=120) as client:
            # Warm the code path and the keep-alive connection with a stream that matches nothing.
            client.get("/api/events/", params={"email": "warm-up@example.invalid"}).raise_for_status()
            idle = HealthProber(base_url, health_pause_s)
            idle.start()
            time.sleep(1.0)
            idle.stop.set()
            idle.join()

            # Growth is measured from before the first run, so memory kept between runs counts too.
            baseline = proc_status_kib(pid, "VmRSS")
            hwm_reset = _reset_peak_rss(pid)
            sampler = RssSampler(pid)
            sampler.start()
            runs = [stream_everything(client, base_url, events, health_pause_s) for _ in range(repeat)]
            sampler.stop.set()
            sampler.join()
            hwm_growth = proc_status_kib(pid, "VmHWM") - baseline if hwm_reset else None
    return Result(
        events=events,
        seed_s=seed_s,
        runs=runs,
        rss_baseline=baseline,
        rss_peak=max(sampler.peak, baseline),
        rss_samples=sampler.samples,
        hwm_growth=hwm_growth,
        health_idle=[latency for _, latency in idle.timings],
    )


def stream_everything(client: httpx.Client, base_url: str, events: int, health_pause_s: float) -> Run:
    """One unfiltered GET, timed, with /api/health asked in a loop meanwhile; checks the count."""
    prober = HealthProber(base_url, health_pause_s)
    prober.start()
    time.sleep(0.05)  # the prober is under way before the request goes out
    chunks: list[bytes] = []
    started = time.perf_counter()
    with client.stream("GET", "/api/events/") as response:
        first_byte_s = time.perf_counter() - started  # status line and headers are in
        chunks.extend(response.iter_raw())
    total_s = time.perf_counter() - started
    prober.stop.set()
    prober.join()
    body = b"".join(chunks)
    verified = (
        response.status_code == 200 and prober.failures == 0 and len(orjson.loads(body)["events"]) == events
    )
    return Run(
        total_s=total_s,
        first_byte_s=first_byte_s,
        body_bytes=len(body),
        verified=verified,
        health=[latency for at, latency in prober.timings if started <= at <= started + total_s],
    )


def _reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's VmHWM for `pid` (a cross-check on the polled peak); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def print_report(results: list[Result], server: str) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    repeat = len(results[0].runs)
    print(
        f"bench_stream: unfiltered GET /api/events/ x{repeat} per N (median shown), one uvicorn worker, "
        f"stream_chunk_rows={settings.stream_chunk_rows}, {server}; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end"
    )
    header = (
        f"{'events':>8} {'total s':>8} {'1st byte ms':>11} {'body MB':>8} {'verified':>8} "
        f"{'RSS base MiB':>12} {'RSS peak MiB':>12} {'growth MiB':>10} {'(HWM) MiB':>9} "
        f"{'health n':>8} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        health = result.health_during
        hwm = f"{result.hwm_growth / MIB:.1f}" if result.hwm_growth is not None else "n/a"
        print(
            f"{result.events:>8,} {statistics.median(run.total_s for run in result.runs):>8.2f} "
            f"{statistics.median(run.first_byte_s for run in result.runs) * 1000:>11.1f} "
            f"{result.runs[0].body_bytes / 1e6:>8.1f} "
            f"{'yes' if result.verified else 'NO':>8} "
            f"{result.rss_baseline / MIB:>12.1f} {result.rss_peak / MIB:>12.1f} "
            f"{(result.rss_peak - result.rss_baseline) / MIB:>10.1f} {hwm:>9} "
            f"{len(health):>8} {percentile(health, 0.5) * 1000:>7.1f} {percentile(health, 0.99) * 1000:>7.1f}"
        )
    print()
    for result in results:
        totals = ", ".join(f"{run.total_s:.2f}" for run in result.runs)
        first_bytes = ", ".join(f"{run.first_byte_s * 1000:.0f}" for run in result.runs)
        idle, worst = result.health_idle, percentile(result.health_during, 1.0)
        print(
            f"{result.events:,} events: seeded in {result.seed_s:.1f} s; total s {totals}; "
            f"1st byte ms {first_bytes}; health during max {worst * 1000:.1f} ms; "
            f"health idle p50 {percentile(idle, 0.5) * 1000:.1f} p99 {percentile(idle, 0.99) * 1000:.1f} ms "
            f"(n {len(idle)}); RSS polled {result.rss_samples} times"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000], metavar="N")
    parser.add_argument(
        "--database-url", help="a server where we may CREATE DATABASE (default: embedded, temporary)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="measured GETs per N (default 5)")
    parser.add_argument(
        "--health-pause-ms", type=float, default=5, help="pause between /api/health requests (default 5)"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-stream-") as workdir,
        postgres_server(args.database_url, Path(workdir)) as server_url,
    ):
        results = [
            measure(server_url, events, args.repeat, args.health_pause_ms / 1000) for events in args.events
        ]
    server = "PostgreSQL at --database-url" if args.database_url else "embedded PostgreSQL"
    print_report(results, server)
    if not all(result.verified for result in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
