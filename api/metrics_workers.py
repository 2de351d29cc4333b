"""What `serve` does so that the metrics of several workers add up (prometheus-client's multiprocess mode).

Each worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR and a scrape adds up every
file there. The variable must be set before a worker imports prometheus_client, so it is set here,
in the supervisor, before any worker starts (uvicorn spawns them: they inherit the environment).
This module imports prometheus_client only to drop a gone worker's files, by which time it is set.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from uvicorn.supervisors import Multiprocess

MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics_directory(workers: int) -> Iterator[Path | None]:
    """PROMETHEUS_MULTIPROC_DIR, empty, for the workers about to start; yields it (None: one worker).

    An operator's own directory is used and emptied of the last run's files (left stale, their
    counts would be added to this run's); otherwise, with several workers, a fresh private one is
    made and removed afterwards. One worker keeps its metrics in memory.
    """
    chosen = os.environ.get(MULTIPROCESS_DIRECTORY)
    if chosen:
        directory = Path(chosen)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    if workers == 1:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="activity-service-metrics-"))
    os.environ[MULTIPROCESS_DIRECTORY] = str(directory)
    try:
        yield directory
    finally:
        del os.environ[MULTIPROCESS_DIRECTORY]
        shutil.rmtree(directory, ignore_errors=True)


class MetricsAwareMultiprocess(Multiprocess):
    """uvicorn's supervisor, which also drops the live gauges of a worker that is gone.

    A worker replaced after a crash (or by SIGHUP, SIGTTOU) leaves its files behind: its counters
    rightly still count, but its gauges (connections in use, live subscribers) would be added to
    the live workers' for ever. prometheus-client's mark_process_dead removes them.
    """

    def init_processes(self) -> None:
        super().init_processes()
        self._known_pids = self._worker_pids()

    def keep_subprocess_alive(self) -> None:
        # Runs after every round of signal handling too, so replacements made there are seen here.
        super().keep_subprocess_alive()
        current = self._worker_pids()
        gone = self._known_pids - current
        if gone and MULTIPROCESS_DIRECTORY in os.environ:
            from prometheus_client.multiprocess import mark_process_dead

            for pid in gone:
                mark_process_dead(pid)
        self._known_pids = current

    def _worker_pids(self) -> set[int]:
        return {process.pid for process in self.processes if process.pid is not None}
