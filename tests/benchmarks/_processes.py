"""Processes the suite starts and watches: the service under test, memory sampling, percentiles."""

import math
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.support import ROOT, free_port, service_env, stop_process, wait_until_healthy

MIB = 1024 * 1024


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank: the smallest sample with at least `fraction` of all samples at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else math.nan


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    """Resident set size of a process and all its descendants, in bytes (0 once it is gone)."""
    total = 0
    for process in _tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _tree_cpu(pid: int) -> dict[int, float]:
    seconds = {}
    for process in _tree(pid):
        try:
            times = process.cpu_times()
            seconds[process.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return seconds


class TreeSampler:
    """While in use, samples the RSS of a process tree in a thread (keeps the peak) and counts the
    CPU time the tree used: `cores` is how many of the machine's cores it kept busy on average.
    """

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.baseline = tree_rss(pid)
        self.peak = self.baseline
        self.cores = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "TreeSampler":
        self._cpu_started, self._started = _tree_cpu(self.pid), time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        cpu, elapsed = _tree_cpu(self.pid), time.monotonic() - self._started
        used = sum(seconds - self._cpu_started.get(pid, 0.0) for pid, seconds in cpu.items())
        self.cores = used / elapsed if elapsed > 0 else 0.0


@dataclass
class RunningService:
    base_url: str
    pid: int  # the supervisor (with --workers > 1) or the only process
    workers: int
    log_path: Path

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the supervisor's children (or the process itself)."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        serving = [child.pid for child in children if "resource_tracker" not in " ".join(child.cmdline())]
        return serving or [self.pid]


def service_command() -> list[str]:
    """`activity-service` from the project's venv (the console script), else the module."""
    script = Path(sys.executable).with_name("activity-service")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


@contextmanager
def running_service(
    database_url: str, workers: int, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[RunningService]:
    """`activity-service serve --workers N` on 127.0.0.1 against `database_url`; stopped at the end.

    It runs from an empty folder so a developer's .env cannot change what is measured, with the
    default settings otherwise (as the README recommends for production); its log goes to a file.
    """
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="service-", dir=workdir))
    log_path = folder / "service.log"
    command = [*service_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers)]
    env = service_env(DATABASE_URL=database_url, **(extra_env or {}))
    with log_path.open("wb") as log:
        # Its own session: a Ctrl-C in the terminal reaches the suite, which stops it in order.
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            try:
                wait_until_healthy(base_url, process, 90)
            except RuntimeError as error:
                raise RuntimeError(f"{error}\n{log_path.read_text(errors='replace')[-3000:]}") from error
            service = RunningService(base_url, process.pid, workers, log_path)
            _wait_for_workers(service)
            yield service
        finally:
            stop_process(process)


@contextmanager
def running_afternoon(database_url: str, workers: int, workdir: Path) -> Iterator[RunningService]:
    """The afternoon reference (tests/benchmarks/_afternoon.py) under uvicorn with `workers`."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="afternoon-", dir=workdir))
    log_path = folder / "afternoon.log"
    command = [sys.executable, "-m", "uvicorn", "tests.benchmarks._afternoon:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    env = service_env(DATABASE_URL=database_url, PYTHONPATH=str(ROOT))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, process, 60)
            yield RunningService(base_url, process.pid, workers, log_path)
        finally:
            stop_process(process)


def _wait_for_workers(service: RunningService, timeout_s: float = 60) -> None:
    """With several workers, wait until each of them has started up (one answering is not enough)."""
    if service.workers <= 1:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = service.log_path.read_text(errors="replace")
        if text.count("Application startup complete") >= service.workers:
            return
        time.sleep(0.1)
    raise RuntimeError(f"not all {service.workers} workers started in {timeout_s} s")


def kill_tree(pid: int) -> None:
    """Terminate a process and its descendants (used for peers started through a shell or npm)."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    processes = [*root.children(recursive=True), root]
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=10)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
