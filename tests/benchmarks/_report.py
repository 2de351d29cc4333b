"""The one table the suite prints: rows, targets, verdicts; plain text and Markdown are the same table."""

import math
import os
import platform
import re
import subprocess
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

MET, MISSED = "MET", "MISSED"
P99_LIMIT_MS = 100.0  # every throughput row at the highest concurrency


@dataclass
class Row:
    point: str
    c: str = ""
    throughput: str = ""
    p50_ms: str = ""
    p99_ms: str = ""
    errors: str = ""
    server_rss_mb: str = ""
    server_cpu: str = ""  # cores the server's processes kept busy (of the machine's)
    # CPU time of the server's processes per request (or per event): what survives a noisy machine.
    cpu_us: str = ""
    reference: str = ""
    ratio: str = ""
    target: str = ""
    result: str = ""
    p99_target: str = ""  # "<= 100 ms: MET" on the rows it applies to


HEADERS = {
    "point": "point",
    "c": "c",
    "throughput": "throughput",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "errors": "errors",
    "server_rss_mb": "server RSS MB",
    "server_cpu": "server CPU",
    "cpu_us": "server CPU µs per request (batch: per event)",
    "reference": "reference",
    "ratio": "ratio",
    "target": "target",
    "result": "result",
    "p99_target": "p99 <= 100 ms (top c)",
}


def number(value: float, digits: int = 0) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def ms(value: float) -> str:
    return number(value, 1 if value < 100 else 0)


def verdict(ok: bool) -> str:
    return MET if ok else MISSED


def p99_verdict(p99_ms: float) -> str:
    return f"{ms(p99_ms)}: {verdict(p99_ms <= P99_LIMIT_MS)}"


def render(rows: list[Row]) -> str:
    """A Markdown table, padded so it also reads as plain text."""
    keys = [f.name for f in fields(Row)]
    cells = [[HEADERS[k] for k in keys]] + [[getattr(row, k) for k in keys] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(keys))]
    numeric = {
        "c",
        "throughput",
        "p50_ms",
        "p99_ms",
        "errors",
        "server_rss_mb",
        "server_cpu",
        "cpu_us",
        "ratio",
    }

    def line(values: list[str]) -> str:
        padded = [
            v.rjust(w) if k in numeric else v.ljust(w) for k, v, w in zip(keys, values, widths, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    separator = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if k in numeric else ("-" * (w + 2))
            for k, w in zip(keys, widths, strict=True)
        )
        + "|"
    )
    return "\n".join([line(cells[0]), separator, *(line(values) for values in cells[1:])])


def _cpu_model() -> str:
    try:
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                return text_line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gib() -> float:
    for text_line in Path("/proc/meminfo").read_text().splitlines():
        if text_line.startswith("MemTotal:"):
            return int(text_line.split()[1]) / 2**20
    return math.nan


def _version(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (completed.stdout + completed.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine_lines(postgres_version: str, wrk: str, pgbench: str) -> list[str]:
    """What the figures were taken on, for the README's "figures taken on ..."."""
    wrk_version = re.sub(r"\s*\[.*", "", _version([wrk, "--version"]))
    return [
        f"figures taken on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {_cpu_model()}, {os.cpu_count()} cores, {_ram_gib():.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, load average {os.getloadavg()[0]:.2f} at the start",
        f"software: Python {platform.python_version()}, PostgreSQL {postgres_version}, {wrk_version}, "
        f"{_version([pgbench, '--version'])}",
    ]
