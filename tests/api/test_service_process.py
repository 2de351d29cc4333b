"""The `activity-service` process: restarts, workers, start-up failures, migrate, configuration."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg
import httpx
import pytest

from tests.support import (
    ROOT,
    free_port,
    running_service,
    service_env,
    valid_event,
)

CLI = Path(sys.executable).with_name("activity-service")
EVENT_KEYS = ["component", "data", "email", "environment", "message", "id", "created_at"]


def run_cli(env: dict[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """The console script, to completion, its output captured."""
    return subprocess.run(
        [str(CLI), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def postmaster_pids_on(data_dir: Path) -> list[int]:
    """PostgreSQL servers running on `data_dir` (a postmaster runs as `postgres -D <dir> ...`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            arguments[0].endswith(b"/postgres")
            and b"-D" in arguments
            and arguments[arguments.index(b"-D") + 1 :][:1] == [str(data_dir).encode()]
        ):
            pids.append(int(entry.name))
    return pids


def child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; the parent pid is the 2nd field after it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def assert_embedded_server_stopped(data_dir: Path, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while (data_dir / "postmaster.pid").exists() or postmaster_pids_on(data_dir):
        assert time.monotonic() < deadline, (
            f"embedded postgres still running on {data_dir}: pids {postmaster_pids_on(data_dir)}"
        )
        time.sleep(0.1)


@pytest.fixture
def data_dir(embedded_data_dir: Path) -> Iterator[Path]:
    """The embedded server's folder; a server a failed test left running on it is stopped."""
    yield embedded_data_dir
    # Whatever a failed test left behind, no server may outlive it.
    for pid in postmaster_pids_on(embedded_data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def test_event_survives_a_restart_on_the_same_data_dir(data_dir: Path) -> None:
    env = service_env(ACTIVITY_DATA_DIR=str(data_dir))
    with running_service(env) as (base_url, _process):
        created = httpx.post(f"{base_url}/api/events/", json=valid_event(message="survivor"), timeout=10)
        assert created.status_code == 201
        assert len(postmaster_pids_on(data_dir)) == 1
        assert (data_dir / "postmaster.pid").exists()
    assert_embedded_server_stopped(data_dir)

    with running_service(env) as (base_url, _process):
        again = httpx.get(f"{base_url}/api/events/{created.json()['id']}", timeout=10)
        assert again.status_code == 200
        assert again.json() == created.json()
        assert httpx.get(f"{base_url}/api/events/", timeout=10).json() == {"events": [created.json()]}
    assert_embedded_server_stopped(data_dir)


def test_two_workers_share_one_embedded_database(data_dir: Path) -> None:
    env = service_env(ACTIVITY_DATA_DIR=str(data_dir))
    with running_service(env, "--workers", "2") as (base_url, process):
        workers = [
            pid
            for pid in child_pids(process.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        # A fresh connection per request, so the kernel spreads them over both workers.
        ids = []
        for n in range(20):
            with httpx.Client(base_url=base_url, timeout=10) as client:
                response = client.post("/api/events/", json=valid_event(message=f"m{n}"))
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
        for _ in range(6):
            with httpx.Client(base_url=base_url, timeout=10) as client:
                assert [event["id"] for event in client.get("/api/events/").json()["events"]] == ids
        assert len(postmaster_pids_on(data_dir)) == 1
    assert_embedded_server_stopped(data_dir)


def assert_one_clear_error_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_wrong_database_url_scheme_fails_with_one_clear_line(command: str) -> None:
    env = service_env(DATABASE_URL="mysql://user:secret@localhost/activity")
    args = [command, "--port", str(free_port())] if command == "serve" else [command]
    line = assert_one_clear_error_line(run_cli(env, *args), "DATABASE_URL")
    assert "secret" not in line


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_unreachable_database_fails_with_one_clear_line(command: str) -> None:
    port = free_port()  # nothing listens there
    env = service_env(
        DATABASE_URL=f"postgresql://postgres:secret@127.0.0.1:{port}/activity", STARTUP_WAIT_S="1"
    )
    args = [command, "--port", str(free_port())] if command == "serve" else [command]
    started = time.monotonic()
    result = run_cli(env, *args)
    assert time.monotonic() - started < 30
    line = assert_one_clear_error_line(result, f"127.0.0.1:{port}")
    assert "secret" not in line


@pytest.mark.slow
def test_migrate_creates_the_events_table_on_an_empty_external_database(empty_database: str) -> None:
    async def tables() -> set[str]:
        connection = await asyncpg.connect(empty_database)
        try:
            rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {row["tablename"] for row in rows}
        finally:
            await connection.close()

    assert "events" not in asyncio.run(tables())
    env = service_env(DATABASE_URL=empty_database)
    result = run_cli(env, "migrate")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "events" in asyncio.run(tables())
    # Running it again changes nothing and still succeeds.
    assert run_cli(env, "migrate").returncode == 0

    with running_service(env) as (base_url, _process):
        created = httpx.post(f"{base_url}/api/events/", json=valid_event(), timeout=10)
        assert created.status_code == 201
        assert list(created.json()) == EVENT_KEYS


@pytest.mark.slow
def test_created_at_is_the_true_utc_epoch_under_a_non_utc_time_zone(database_url: str) -> None:
    # UTC+05:45 as a POSIX TZ string (no tzdata needed), so local midnight is not UTC midnight.
    env = service_env(DATABASE_URL=database_url, TZ="XST-05:45")
    probe = subprocess.run(
        [sys.executable, "-c", "import time; print(time.timezone)"], env=env, capture_output=True, text=True
    )
    assert probe.stdout.strip() == str(-(5 * 3600 + 45 * 60)), "the TZ variable is not honoured here"

    async def stored_epoch(event_id: str) -> str:
        connection = await asyncpg.connect(database_url)
        try:
            epoch = await connection.fetchval(
                "SELECT extract(epoch FROM created_at) FROM events WHERE id = $1", uuid.UUID(event_id)
            )
            return str(float(epoch))
        finally:
            await connection.close()

    async def insert_at(moment: datetime, message: str) -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(
                "INSERT INTO events (component, environment, email, message, data, created_at) "
                "VALUES ('c', 'e', 'a@b.co', $1, '{}', $2)",
                message,
                moment,
            )
        finally:
            await connection.close()

    with running_service(env) as (base_url, _process):
        before = time.time()
        created = httpx.post(f"{base_url}/api/events/", json=valid_event(), timeout=10).json()
        after = time.time()
        assert created["created_at"] == asyncio.run(stored_epoch(created["id"]))
        assert before - 1 <= float(created["created_at"]) <= after + 1

        # 20:00 UTC on the 15th is already the 16th in UTC+05:45: from_date must still mean UTC.
        asyncio.run(insert_at(datetime(2021, 4, 15, 20, 0, tzinfo=UTC), "15th UTC, 16th local"))
        asyncio.run(insert_at(datetime(2021, 4, 16, 0, 0, tzinfo=UTC), "16th UTC midnight"))
        listed = httpx.get(f"{base_url}/api/events/", params={"from_date": "04-16-2021"}, timeout=10).json()
        messages = [event["message"] for event in listed["events"]]
        assert messages[0] == "16th UTC midnight"
        assert "15th UTC, 16th local" not in messages
        by_id = httpx.get(f"{base_url}/api/events/{created['id']}", timeout=10).json()
        assert by_id["created_at"] == created["created_at"]


@pytest.mark.slow
def test_postgres_variables_start_the_service_without_database_url(
    server_url: str, database_url: str
) -> None:
    address = urlsplit(database_url)
    if not address.hostname:
        pytest.skip("the test server listens on a unix socket only; POSTGRES_HOST names a TCP host")
    env = service_env(
        POSTGRES_USER=address.username or "postgres",
        POSTGRES_HOST=address.hostname,
        POSTGRES_PORT=str(address.port or 5432),
        POSTGRES_DB=address.path.lstrip("/"),
        **({"POSTGRES_PASSWORD": address.password} if address.password else {}),
    )
    with running_service(env) as (base_url, _process):
        assert httpx.post(f"{base_url}/api/events/", json=valid_event(), timeout=10).status_code == 201
        assert len(httpx.get(f"{base_url}/api/events/", timeout=10).json()["events"]) == 1


class TestSettingsFromTheOriginalVariables:
    """Without DATABASE_URL, the original's POSTGRES_* variables (environment or .env) name the database."""

    @pytest.fixture(autouse=True)
    def clean_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in list(os.environ):
            if name.startswith("POSTGRES_") or name in ("DATABASE_URL", "ACTIVITY_DATA_DIR"):
                monkeypatch.delenv(name)

    def settings(self):  # type: ignore[no-untyped-def]
        from api.settings import Settings

        return Settings(_env_file=None)  # type: ignore[call-arg]

    def test_postgres_variables_build_the_url_on_port_5432(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("POSTGRES_USER", "activity")
        monkeypatch.setenv("POSTGRES_PASSWORD", "p@ss/w:rd %")
        monkeypatch.setenv("POSTGRES_DB", "events")
        monkeypatch.setenv("POSTGRES_HOST", "db.internal")
        url = self.settings().external_database_url
        assert url == f"postgresql://activity:{quote('p@ss/w:rd %', safe='')}@db.internal:5432/events"

    def test_postgres_port_can_be_changed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("POSTGRES_HOST", "db.internal")
        monkeypatch.setenv("POSTGRES_PORT", "6543")
        assert self.settings().external_database_url == "postgresql://postgres@db.internal:6543/postgres"

    def test_database_url_wins_over_postgres_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("POSTGRES_HOST", "db.internal")
        monkeypatch.setenv("POSTGRES_USER", "ignored")
        monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app@primary:5432/activity")
        assert self.settings().external_database_url == "postgresql://app@primary:5432/activity"

    def test_without_any_database_variable_the_embedded_server_is_used(self) -> None:
        assert self.settings().external_database_url is None

    def test_postgres_variables_are_read_from_a_dot_env_file(self, tmp_path: Path) -> None:
        from api.settings import Settings

        env_file = tmp_path / ".env"
        env_file.write_text(
            "POSTGRES_USER=alice\nPOSTGRES_PASSWORD=secret\nPOSTGRES_DB=activity\nPOSTGRES_HOST=db\n"
        )
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
        assert settings.external_database_url == "postgresql://alice:secret@db:5432/activity"

    def test_wrong_database_url_scheme_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pydantic import ValidationError

        monkeypatch.setenv("DATABASE_URL", "mysql://localhost/activity")
        with pytest.raises(ValidationError):
            self.settings()
