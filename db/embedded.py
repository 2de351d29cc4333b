"""An embedded PostgreSQL (from the pgserver package) for when no database is configured."""

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATABASE_NAME = "activity"


@dataclass
class EmbeddedPostgres:
    """A handle on a pgserver-managed server; several processes may hold one on the same folder."""

    data_dir: Path
    url: str
    _server: Any

    def release(self) -> None:
        """Drop this process's handle; the last process to let go stops the server."""
        self._server.cleanup()


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the server in `data_dir` and make sure the service's database exists.

    This blocks for up to a few seconds on a cold start: call it from a thread in async code.
    """
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (normal on servers) and falls back.
        warnings.simplefilter("ignore")
        import pgserver  # imported here: it registers atexit hooks and touches the disk on import

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(data_dir)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        # Two processes may race here on a brand-new folder; the loser's error is harmless.
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return EmbeddedPostgres(data_dir=data_dir, url=server.get_uri(DATABASE_NAME), _server=server)


def _forget_dead_handles(data_dir: Path) -> None:
    """Remove pids of processes that died without releasing their handle (SIGKILL, crash).

    pgserver stops the server when its list of holder pids empties; a dead pid left there would
    keep an orphaned server running forever.
    """
    handle_file = data_dir / ".handle_pids.json"
    try:
        pids: list[int] = json.loads(handle_file.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if _is_alive(pid)]
    if alive != pids:
        log.info("embedded postgres: forgetting dead handle pids %s", sorted(set(pids) - set(alive)))
        handle_file.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
