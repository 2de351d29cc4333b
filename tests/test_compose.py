"""The deployment files say what they should: compose.yaml, the Dockerfile and .env.sample.

Docker cannot run where the tests run, so these read the files instead of starting containers.
"""

import os
import re
import shlex
from typing import Any

import pytest
import yaml

from api.settings import Settings
from tests.support import ROOT

SAMPLE_NAME = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


@pytest.fixture(autouse=True)
def empty_events_table() -> None:
    """Overrides conftest's: nothing here touches a database, so none is started."""


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def words(command: str | list[str]) -> list[str]:
    """A compose command (string or list form) as its argv."""
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def test_compose_has_database_migration_and_app_services(services: dict[str, Any]) -> None:
    assert set(services) == {"db", "migrate", "app"}
    assert services["db"]["image"] == "postgres:16"


def test_database_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    mounts = [str(volume).split(":") for volume in compose["services"]["db"]["volumes"]]
    assert ["pgdata", "/var/lib/postgresql/data"] in mounts
    assert "pgdata" in compose["volumes"]


def test_database_healthcheck_uses_pg_isready(services: dict[str, Any]) -> None:
    check = services["db"]["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL")
    assert "pg_isready" in " ".join(check[1:])


def test_migrate_runs_the_console_script_once_the_database_is_healthy(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert words(migrate["command"]) == ["activity-service", "migrate"]
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert migrate.get("restart", "no") == "no"


def test_app_starts_after_a_healthy_database_and_a_successful_migration(services: dict[str, Any]) -> None:
    assert services["app"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }


def test_app_serves_with_the_console_script_on_published_port_5000(services: dict[str, Any]) -> None:
    app = services["app"]
    argv = words(app["command"])
    assert argv[:2] == ["activity-service", "serve"]
    assert option(argv, "--host") == "0.0.0.0"
    assert option(argv, "--port") == "5000"
    assert int(option(argv, "--workers") or 1) >= 2
    assert "5000:5000" in [str(port) for port in app["ports"]]


def test_app_healthcheck_asks_api_health_with_python(services: dict[str, Any]) -> None:
    check = services["app"]["healthcheck"]["test"]
    assert check[:2] == ["CMD", "python"]
    assert "http://127.0.0.1:5000/api/health" in " ".join(check)


def test_app_and_migrate_reach_the_database_the_db_service_creates(services: dict[str, Any]) -> None:
    database = services["db"]["environment"]
    for name in ("migrate", "app"):
        environment = services[name]["environment"]
        if "DATABASE_URL" in environment:
            assert "@db:5432/" in environment["DATABASE_URL"]
            continue
        assert environment["POSTGRES_HOST"] == "db"
        for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
            assert environment[key] == database[key], f"{name}: {key}"


def test_app_gets_longer_than_its_graceful_shutdown_before_sigkill(services: dict[str, Any]) -> None:
    grace = services["app"]["stop_grace_period"]
    assert grace.endswith("s")
    assert int(grace[:-1]) > Settings.model_fields["graceful_shutdown_s"].default


def test_dockerfile_runs_slim_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    bases = [arguments.split()[0] for name, arguments in instructions if name == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)
    users = [arguments.strip() for name, arguments in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_dockerfile_installs_without_pip_cache_and_serves_on_port_5000() -> None:
    instructions = dockerfile_instructions()
    installs = [arguments for name, arguments in instructions if name == "RUN" and "pip install" in arguments]
    assert installs and all("--no-cache-dir" in command for command in installs)
    assert ("EXPOSE", "5000") in instructions
    command = next(arguments for name, arguments in reversed(instructions) if name == "CMD")
    assert command.startswith("[")  # exec form: the server is PID 1 and gets SIGTERM
    argv = yaml.safe_load(command)
    assert argv[:2] == ["activity-service", "serve"]
    assert option(argv, "--host") == "0.0.0.0"
    assert option(argv, "--port") == "5000"


def test_dockerfile_bakes_in_verified_graphiql_files_before_dropping_root() -> None:
    instructions = dockerfile_instructions()
    runs = [arguments for name, arguments in instructions if name == "RUN"]
    baking = next(command for command in runs if "graphiql_assets fetch" in command)
    # verify fails the build when the registry could not be reached (fetch alone only warns).
    assert baking.index("graphiql_assets fetch") < baking.index("graphiql_assets verify")
    assert instructions.index(("RUN", baking)) < next(
        index for index, (name, _arguments) in enumerate(instructions) if name == "USER"
    )


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".data", ".git", ".env", "**/__pycache__", ".pytest_cache"} <= ignored


def env_names() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def test_env_sample_lists_every_setting_and_nothing_else() -> None:
    listed = SAMPLE_NAME.findall((ROOT / ".env.sample").read_text())
    assert sorted(set(listed)) == sorted(listed), "a name is listed twice"
    assert set(listed) == env_names()


def test_env_sample_leaves_database_url_commented_out() -> None:
    text = (ROOT / ".env.sample").read_text()
    assert re.search(r"^#\s*DATABASE_URL=", text, re.MULTILINE)
    assert not re.search(r"^\s*(DATABASE_URL|POSTGRES_HOST)=", text, re.MULTILINE)


def test_env_sample_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):  # the environment would win over both files
        if key.upper() in env_names():
            monkeypatch.delenv(key)
    from_sample = Settings(_env_file=ROOT / ".env.sample")  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for name in Settings.model_fields:
        assert getattr(from_sample, name) == getattr(defaults, name), name.upper()


def test_compose_requires_api_keys(services: dict[str, Any]) -> None:
    assert services["app"]["environment"]["AUTH_REQUIRED"] == "true"
