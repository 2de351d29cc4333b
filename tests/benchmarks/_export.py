"""GET /api/events/export of the whole seeded table, as NDJSON and as CSV: total time, first byte, memory.

curl fetches the body into a file (a real client, timed by itself); the service's process tree is
sampled for RSS meanwhile. Each export is then checked: one line (NDJSON) or row (CSV) per event,
oldest first, and resuming after the next-to-last event's cursor gives exactly the last one.
"""

import csv
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks._processes import TreeSampler, tree_rss

FORMATS = ("ndjson", "csv")


@dataclass
class ExportResult:
    export_format: str
    events: int
    total_s: float
    first_byte_ms: float
    body_mb: float
    verified: bool
    rss_growth_mib: float
    server_cpu_s: float  # CPU time of the service's processes during the export (survives a busy machine)


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


def _records(body_path: Path, export_format: str) -> tuple[int, list[tuple[str, str]]]:
    """(how many events, (created_at, cursor) of the last two), read from the file as a stream."""
    count, last = 0, []
    with body_path.open(newline="", encoding="utf-8") as body:
        if export_format == "ndjson":
            rows = (json.loads(line) for line in body)
        else:
            rows = csv.DictReader(body)
        previous = ""
        for row in rows:
            count += 1
            # Oldest first: created_at never goes back (compared as numbers of seconds).
            if previous and float(row["created_at"]) < float(previous):
                return -1, []
            previous = row["created_at"]
            last = [*last[-1:], (row["id"], row["cursor"])]
    return count, last


def measure_export(base_url: str, service_pid: int, events: int, workdir: Path) -> list[ExportResult]:
    """Export everything once per format, sampling the service's RSS; check each body."""
    if shutil.which("curl") is None:
        raise RuntimeError("curl is not installed (apt-get install -y curl)")
    folder = Path(tempfile.mkdtemp(prefix="export-", dir=workdir))
    results = []
    try:
        body_path = folder / "body"
        url = f"{base_url}/api/events/export"
        _curl(f"{url}?email=warm-up@example.invalid", body_path)  # warm the code path
        time.sleep(0.5)
        for export_format in FORMATS:
            baseline = tree_rss(service_pid)
            with TreeSampler(service_pid, interval_s=0.01) as rss:
                status, first_byte, total = _curl(f"{url}?format={export_format}", body_path)
            body_mb = body_path.stat().st_size / 1e6
            count, last = _records(body_path, export_format)
            verified = status == 200 and count == events and len(last) == 2
            if verified:  # resuming after the next-to-last event gives exactly the last one
                _curl(f"{url}?format={export_format}&after={last[0][1]}", body_path)
                resumed, tail = _records(body_path, export_format)
                verified = resumed == 1 and tail[-1][0] == last[1][0]
            results.append(
                ExportResult(
                    export_format=export_format,
                    events=events,
                    total_s=total,
                    first_byte_ms=first_byte * 1000,
                    body_mb=body_mb,
                    verified=verified,
                    rss_growth_mib=(rss.peak - baseline) / 2**20,
                    server_cpu_s=rss.cores * total,
                )
            )
            time.sleep(0.5)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results
