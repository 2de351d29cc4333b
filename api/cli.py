"""The `activity-service` command: serve, migrate, prune."""

import asyncio
import copy
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
import typer
import uvicorn
from pydantic import ValidationError

from api.settings import Settings
from db.embedded import start_embedded
from db.engine import CONNECTION_ERRORS, Database
from db.migrate import upgrade_to_head
from db.retention import prune_events_before
from db.urls import masked_url

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="activity-service: an event log.")

# Our own packages log through uvicorn's handler, so every worker prints the same way.
OWN_LOGGERS = ("api", "db", "rest", "graphql_schema")


def fail(message: str) -> None:
    """One clear line on stderr and a non-zero exit, instead of a traceback."""
    typer.echo(f"activity-service: {message}", err=True)
    raise typer.Exit(1)


def load_settings() -> Settings:
    """Settings from the environment and .env, or a one-line explanation of what is wrong."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']).upper()}: {item['msg']}" for item in error.errors()
        )
        fail(f"invalid settings: {problems}")
        raise AssertionError("unreachable") from error


def wait_for_database(url: str, timeout_s: float) -> None:
    """Try to connect until `timeout_s` has passed; fail with one line if the database never answers."""
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        try:
            asyncio.run(_probe(url, timeout_s))
            return
        except asyncpg.InvalidPasswordError as error:
            fail(f"database {masked_url(url)} refused the credentials: {error}")
        except asyncpg.InvalidCatalogNameError as error:
            fail(f"database {masked_url(url)} does not exist: {error}")
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as error:
            if time.monotonic() >= deadline:
                fail(f"cannot reach the database at {masked_url(url)}: {error or type(error).__name__}")
            if not announced:
                typer.echo(f"activity-service: waiting for the database at {masked_url(url)} ...", err=True)
                announced = True
            time.sleep(0.5)


async def _probe(url: str, timeout_s: float) -> None:
    connection = await asyncpg.connect(url, timeout=timeout_s)
    await connection.close()


def log_config(level: str) -> dict[str, object]:
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for name in OWN_LOGGERS:
        config["loggers"][name] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 5000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    migrate: Annotated[
        bool, typer.Option("--migrate", help="Apply migrations first (external database).")
    ] = False,
) -> None:
    """Serve the REST and GraphQL API with uvicorn."""
    settings = load_settings()
    url = settings.external_database_url
    if url is None:
        typer.echo(
            f"activity-service: embedded PostgreSQL, data in {settings.activity_data_dir.resolve()}",
            err=True,
        )
    else:
        wait_for_database(url, settings.startup_wait_s)
        if migrate:
            upgrade_to_head(url)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(settings.log_level),
        access_log=False,  # api.middleware logs one line per request, with its request id
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )


@cli.command()
def migrate() -> None:
    """Bring the configured database's schema to the newest revision (Alembic upgrade head)."""
    settings = load_settings()
    url = settings.external_database_url
    if url is not None:
        wait_for_database(url, settings.startup_wait_s)
        upgrade_to_head(url)
        typer.echo(f"activity-service: {masked_url(url)} is at the newest schema revision")
        return
    embedded = start_embedded(settings.activity_data_dir)
    try:
        upgrade_to_head(embedded.url)
    finally:
        embedded.release()
    typer.echo(f"activity-service: embedded database in {embedded.data_dir} is at the newest revision")


_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """`90d`, `12h`, `2w`, `30m`, `45s` (or combinations such as `1d12h`) as a timedelta."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise typer.BadParameter(f"{text!r} is not an age like 90d, 12h, 2w, 30m or 45s")
    return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


@cli.command()
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age, e.g. 90d, 12h, 2w.")],
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per delete transaction.")] = 5_000,
) -> None:
    """Delete events older than the given age, in small batches (safe while serving)."""
    age = parse_age(older_than)
    settings = load_settings()
    cutoff = datetime.now(UTC) - age
    url = settings.external_database_url
    embedded = None
    if url is None:
        embedded = start_embedded(settings.activity_data_dir)
        url = embedded.url
    else:
        wait_for_database(url, settings.startup_wait_s)
    try:
        deleted = asyncio.run(_prune(url, cutoff, batch_size))
    finally:
        if embedded is not None:
            embedded.release()
    typer.echo(f"activity-service: deleted {deleted} events created before {cutoff.isoformat()}")


async def _prune(url: str, cutoff: datetime, batch_size: int) -> int:
    database = await Database.connect(url, min_size=1, max_size=1)
    try:
        return await prune_events_before(database, cutoff, batch_size=batch_size)
    finally:
        await database.close()


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    sys.exit(main())
