"""Helpers the tests share: valid events, free ports, live server processes."""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from db.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    from fastapi import FastAPI

    from api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def valid_event(**overrides: Any) -> dict[str, Any]:
    """A body POST /api/events/ accepts; override any field."""
    event: dict[str, Any] = {
        "component": "order",
        "data": {"age": 20},
        "email": "ade@example.com",
        "environment": "production",
        "message": "order failed",
    }
    event.update(overrides)
    return event


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(**overrides: str) -> dict[str, str]:
    """The environment for a service subprocess: ours, minus anything that picks a database.

    Its data folder defaults to a fresh path under the system's temporary folder: the subprocess runs
    in the repository, where ACTIVITY_DATA_DIR's default is the developer's own ./.data, and a test
    that names no database (DATABASE_URL, POSTGRES_*, ACTIVITY_DATA_DIR) must not start a server there.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("POSTGRES_") and key not in ("DATABASE_URL", "ACTIVITY_DATA_DIR")
    }
    unnamed = Path(tempfile.gettempdir()) / f"activity-test-data-{uuid.uuid4().hex[:12]}"
    env["ACTIVITY_DATA_DIR"] = str(unnamed)
    env.update(overrides)
    return env


# Headless Chromium for the browser tests, offline: no sandbox (root), no GPU, no QUIC, no
# first-run, background, update or sync traffic. A test adds its own host rules.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def browser_env(home: Path) -> dict[str, str]:
    """The environment for a test's Chromium, with its home and XDG folders under `home` (a tmp folder).

    Playwright gives Chromium a temporary profile, but Chromium still writes crash-report settings to
    ~/.config/chromium and a dconf cache to ~/.cache in the real home.
    """
    folders = {name: home / name for name in ("config", "cache", "data")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(folders["config"]),
        "XDG_CACHE_HOME": str(folders["cache"]),
        "XDG_DATA_HOME": str(folders["data"]),
    }


@contextmanager
def running_service(
    env: Mapping[str, str], *args: str, port: int | None = None, startup_timeout_s: float = 60
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`activity-service serve` in a subprocess; yields (base URL, process); stops it at the end.

    Its output goes to a temporary file, not a pipe: nobody reads a pipe while the tests run, and
    a full one (about 64 KiB of log lines) would block the server.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port), *args]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, cwd=ROOT, env=dict(env), stdout=output, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, process, startup_timeout_s, output)
            yield base_url, process
        finally:
            stop_process(process)


def wait_until_healthy(
    base_url: str, process: subprocess.Popen[bytes], timeout_s: float, output: IO[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}:\n{_read(output)}")
        try:
            if httpx.get(f"{base_url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"service at {base_url} did not become healthy in {timeout_s} s:\n{_read(output)}")


def _read(output: IO[bytes] | None) -> str:
    if output is None:
        return ""
    output.seek(0)
    return output.read().decode(errors="replace")


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 20) -> int:
    """SIGTERM, then SIGKILL if it will not stop; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def stop_postgres(server: EmbeddedPostgres) -> None:
    """Stop an embedded server under whoever uses it (an outage), with pgserver's own pg_ctl."""
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.data_dir, user=server._server.system_user)


def start_postgres(server: EmbeddedPostgres) -> None:
    """Start it again on the same data folder and socket."""
    server._server.ensure_postgres_running()


def run_statement(url: str, statement: str) -> None:
    """Run one SQL statement on its own connection (CREATE/DROP DATABASE cannot be in a transaction)."""

    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


class ResetConnection:
    """A connection kept across tests, opened again should a test have ended its backend.

    Some tests terminate every backend of the test database (to pin what a dropped connection
    does); the next test must still start from empty tables rather than fail on a closed connection.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: asyncpg.Connection | None = None

    async def _open(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(self._url)
        return self._connection

    async def _run(self, method: str, statement: str) -> Any:
        try:
            return await getattr(await self._open(), method)(statement)
        except (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, asyncpg.AdminShutdownError):
            self._connection = None  # a test ended its backend: open another, once
            return await getattr(await self._open(), method)(statement)

    async def fetchval(self, statement: str) -> Any:
        return await self._run("fetchval", statement)

    async def execute(self, statement: str) -> Any:
        return await self._run("execute", statement)

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()


SERVICES = ("database", "key_verifier", "event_writer", "event_hub")


def app_sharing_services(source: "FastAPI", settings: "Settings", **overrides: object) -> "FastAPI":
    """A fresh app with other settings, served by `source`'s running services (its lifespan's
    pool, key verifier, writer and live feed), `overrides` replacing some of them by name."""
    from api.app import create_app

    unknown = set(overrides) - set(SERVICES)
    assert not unknown, f"not a service: {unknown}"
    application = create_app(settings)
    for name in SERVICES:
        setattr(
            application.state, name, overrides[name] if name in overrides else getattr(source.state, name)
        )
    return application
