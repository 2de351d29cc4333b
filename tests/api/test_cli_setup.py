"""One database set-up for every command, and the CLI's first-five-minutes friction (issue 10)."""

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import httpx
import pytest
import typer
from typer.testing import CliRunner

from api.app import create_app
from api.cli import cli, describe_duration
from api.credentials import key_from_headers
from api.database_setup import DatabaseNotReady, prepared_database
from api.settings import Settings
from tests.api.test_service_process import assert_embedded_server_stopped, postmaster_pids_on
from tests.support import ROOT, free_port, service_env

BASIC = {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`activity-service ARGS` to completion, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def fresh_data_dir(embedded_data_dir: Path) -> Iterator[Path]:
    """A data folder no server has used yet; a server a failed test left running on it is stopped."""
    yield embedded_data_dir
    for pid in postmaster_pids_on(embedded_data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def fresh_env(data_dir: Path) -> dict[str, str]:
    return service_env(ACTIVITY_DATA_DIR=str(data_dir))


def assert_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


# --- one set-up: every command works on a fresh data folder ---------------------------------


@pytest.mark.parametrize(
    "args",
    [["migrate"], ["keys", "list"], ["keys", "create", "--name", "ci", "--scope", "events:read"]],
    ids=["migrate", "keys-list", "keys-create"],
)
def test_command_succeeds_on_a_fresh_data_folder_and_stops_its_server(
    fresh_data_dir: Path, args: list[str]
) -> None:
    assert_succeeded(run_cli(fresh_env(fresh_data_dir), *args))
    assert_embedded_server_stopped(fresh_data_dir)


def test_prune_migrates_a_fresh_data_folder_instead_of_failing(fresh_data_dir: Path) -> None:
    # Before the shared set-up, prune skipped the migration: UndefinedTableError on `events`.
    result = run_cli(fresh_env(fresh_data_dir), "prune", "--older-than", "2d")
    assert_succeeded(result)
    assert "deleted 0 events older than 2 days" in result.stdout
    assert_embedded_server_stopped(fresh_data_dir)


def test_keys_create_list_and_revoke_on_a_fresh_data_folder(fresh_data_dir: Path) -> None:
    env = fresh_env(fresh_data_dir)
    created = run_cli(env, "keys", "create", "--name", "billing", "--scope", "events:read")
    assert_succeeded(created)
    key_id = created.stdout.strip().split("_")[1]

    listed = run_cli(env, "keys", "list")
    assert_succeeded(listed)
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "SCOPES", "CREATED", "STATUS"]
    assert len(rows) == 1 and rows[0].split()[:3] == [key_id, "billing", "events:read"]
    assert rows[0].rstrip().endswith("active")

    assert_succeeded(run_cli(env, "keys", "revoke", key_id))
    assert "revoked" in run_cli(env, "keys", "list").stdout.splitlines()[1]
    assert_embedded_server_stopped(fresh_data_dir)


@pytest.mark.slow
@pytest.mark.parametrize("args", [["keys", "list"], ["prune", "--older-than", "1d"]], ids=["keys", "prune"])
def test_command_on_an_unmigrated_external_database_says_to_migrate_first(
    empty_database: str, args: list[str]
) -> None:
    # An external schema changes only when its operator says so, so these do not migrate it.
    result = run_cli(service_env(DATABASE_URL=empty_database), *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "activity-service migrate" in result.stderr


async def test_prepared_database_refuses_an_unreachable_database_with_one_line() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"postgresql://postgres:secret@127.0.0.1:{free_port()}/activity",
        startup_wait_s=0.5,
    )
    with pytest.raises(DatabaseNotReady) as refused:
        async with prepared_database(settings, migrate_external=False):
            pass
    assert "cannot reach the database" in str(refused.value)
    assert "secret" not in str(refused.value)


async def test_prepared_database_yields_a_configured_database_unchanged(database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    async with prepared_database(settings, migrate_external=False) as url:
        assert url == settings.external_database_url


# --- friction: prune's sentence ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "spoken"),
    [
        (timedelta(days=90), "90 days"),
        (timedelta(hours=24), "1 day"),
        (timedelta(hours=36), "1 day and 12 hours"),
        (timedelta(days=2, hours=1, minutes=30), "2 days, 1 hour and 30 minutes"),
        (timedelta(minutes=30), "30 minutes"),
        (timedelta(seconds=1), "1 second"),
        (timedelta(0), "0 seconds"),
    ],
)
def test_durations_are_described_as_people_say_them(duration: timedelta, spoken: str) -> None:
    assert describe_duration(duration) == spoken


@pytest.mark.slow
def test_prune_reports_in_sentences_not_raw_timedeltas(database_url: str) -> None:
    result = run_cli(
        service_env(DATABASE_URL=database_url, IDEMPOTENCY_WINDOW_HOURS="36"), "prune", "--older-than", "90d"
    )
    assert_succeeded(result)
    deleted, forgotten = result.stdout.splitlines()
    assert "older than 90 days (created before " in deleted and deleted.endswith(" UTC)")
    assert "idempotency keys older than 1 day and 12 hours" in forgotten
    assert "0:00" not in result.stdout  # str(timedelta) as in "1 day, 12:00:00"


# --- friction: help that reads well ------------------------------------------------------------


def _every_command(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _every_command(command, (*path, name))
        else:
            yield (*path, name)


@pytest.mark.parametrize("path", list(_every_command(typer.main.get_command(cli))), ids=" ".join)  # type: ignore[arg-type]
def test_help_shows_flags_bare_and_options_with_a_named_value(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "<str>" not in result.output and "<int" not in result.output
    assert any(
        line.split() == ["--help", "Show", "this", "message", "and", "exit."]
        for line in result.output.splitlines()
    )


def test_serve_help_names_each_value() -> None:
    output = CliRunner().invoke(cli, ["serve", "--help"], env={"COLUMNS": "100"}).output
    assert "--port PORT" in output and "--workers N" in output
    assert any(line.split()[:2] == ["--migrate", "Apply"] for line in output.splitlines() if line.strip())


# --- friction: say at startup whether keys are required ---------------------------------------


@pytest.mark.parametrize(("auth_required", "said"), [(False, "no"), (True, "yes")])
async def test_startup_log_says_whether_api_keys_are_required(
    settings: Settings, caplog: pytest.LogCaptureFixture, auth_required: bool, said: str
) -> None:
    caplog.set_level(logging.INFO, logger="api.lifespan")
    application = create_app(settings.model_copy(update={"auth_required": auth_required}))
    async with application.router.lifespan_context(application):
        pass
    lines = [record.getMessage() for record in caplog.records if "API keys required" in record.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith(f"API keys required: {said}")


# --- friction: another Authorization scheme is malformed, not missing -------------------------


def test_an_authorization_header_in_another_scheme_is_presented_not_ignored() -> None:
    assert key_from_headers({"authorization": "Basic dXNlcjpwYXNzd29yZA=="}) == "Basic dXNlcjpwYXNzd29yZA=="
    assert key_from_headers({"authorization": "Bearer ak_a_b"}) == "ak_a_b"
    assert key_from_headers({"authorization": "Basic xyz", "x-api-key": "ak_a_b"}) == "ak_a_b"
    assert key_from_headers({}) is None


async def test_rest_answers_basic_credentials_as_not_a_valid_key(auth_client: httpx.AsyncClient) -> None:
    response = await auth_client.get("/api/events/", headers=BASIC)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    message = response.json()["message"]
    assert "not a valid API key" in message and "Bearer <key>" in message
    assert "required" not in message


async def test_graphql_answers_basic_credentials_as_not_a_valid_key(auth_client: httpx.AsyncClient) -> None:
    response = await auth_client.post(
        "/graphql", json={"query": "{ events(first: 1) { nodes { id } } }"}, headers=BASIC
    )
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "not a valid API key" in error["message"] and "Bearer <key>" in error["message"]


async def test_basic_credentials_beside_a_valid_x_api_key_are_let_through(
    auth_client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await auth_client.get("/api/events/", headers={**BASIC, "X-API-Key": keys["read"]})
    assert response.status_code == 200


async def test_no_credentials_at_all_are_still_told_a_key_is_required(auth_client: httpx.AsyncClient) -> None:
    response = await auth_client.get("/api/events/")
    assert response.status_code == 401
    assert "required" in response.json()["message"]
