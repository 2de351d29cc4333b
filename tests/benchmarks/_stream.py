"""The unfiltered GET /api/events/ of a 100,000-event table: total time, first byte, memory, liveness.

curl fetches the body (a real client, timed by itself: `time_starttransfer` is the first byte);
meanwhile probe threads ask /api/health on their own keep-alive connections, several of them, so
that with two workers some land on the worker that is streaming; the tree's RSS is sampled.
"""

import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from tests.benchmarks._processes import TreeSampler, percentile, tree_rss

PROBE_CONNECTIONS = 8
PROBE_PAUSE_S = 0.02


@dataclass
class StreamResult:
    events: int
    runs: int
    total_s: float  # median
    first_byte_ms: float  # median
    body_mb: float
    verified: bool
    rss_growth_mib: float
    health_p99_ms: float
    health_probes: int
    health_failures: int


class _Prober(threading.Thread):
    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.timings: list[tuple[float, float]] = []  # (started at, latency s)
        self.failures = 0
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            client.get("/api/health")  # the connection is open before the measured GET starts
            self.ready.set()
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get("/api/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.timings.append((started, time.perf_counter() - started))
                self.failures += not ok
                self.stop.wait(PROBE_PAUSE_S)


def _curl(url: str, body_path: Path) -> tuple[int, float, float]:
    """(status, seconds to first byte, seconds in all) for one GET, body saved to `body_path`."""
    completed = subprocess.run(
        ["curl", "-s", "-o", str(body_path), "-w", "%{http_code} %{time_starttransfer} %{time_total}", url],
        capture_output=True,
        text=True,
        check=True,
    )
    status, first_byte, total = completed.stdout.split()
    return int(status), float(first_byte), float(total)


def measure_stream(base_url: str, service_pid: int, events: int, runs: int, workdir: Path) -> StreamResult:
    """Warm up, then GET everything `runs` times with probes and RSS sampling around each."""
    if shutil.which("curl") is None:
        raise RuntimeError("curl is not installed (apt-get install -y curl)")
    folder = Path(tempfile.mkdtemp(prefix="stream-", dir=workdir))
    body_path = folder / "body.json"
    url = f"{base_url}/api/events/"
    _curl(f"{url}?email=warm-up@example.invalid", body_path)
    time.sleep(0.5)
    totals, first_bytes, health, failures, verified = [], [], [], 0, True
    baseline = tree_rss(service_pid)  # growth counts from before the first run
    with TreeSampler(service_pid, interval_s=0.01) as rss:
        for _ in range(runs):
            probers = [_Prober(base_url) for _ in range(PROBE_CONNECTIONS)]
            for prober in probers:
                prober.start()
            for prober in probers:
                prober.ready.wait(10)
            time.sleep(0.05)
            started = time.perf_counter()
            status, first_byte, total = _curl(url, body_path)
            ended = time.perf_counter()
            for prober in probers:
                prober.stop.set()
                prober.join()
            totals.append(total)
            first_bytes.append(first_byte)
            health += [lat for p in probers for at, lat in p.timings if started <= at <= ended]
            failures += sum(p.failures for p in probers)
            body = body_path.read_bytes()
            verified = verified and status == 200 and len(orjson.loads(body)["events"]) == events
            time.sleep(0.5)
    shutil.rmtree(folder, ignore_errors=True)
    return StreamResult(
        events=events,
        runs=runs,
        total_s=statistics.median(totals),
        first_byte_ms=statistics.median(first_bytes) * 1000,
        body_mb=len(body) / 1e6,
        verified=verified,
        rss_growth_mib=(rss.peak - baseline) / 2**20,
        health_p99_ms=percentile(health, 0.99) * 1000,
        health_probes=len(health),
        health_failures=failures,
    )
