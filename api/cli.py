"""The `activity-service` command: serve, migrate."""

import asyncio
import copy
import sys
import time
from typing import Annotated

import asyncpg
import typer
import uvicorn
from pydantic import ValidationError

from api.settings import Settings
from db.embedded import start_embedded
from db.engine import CONNECTION_ERRORS
from db.migrate import upgrade_to_head
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


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    sys.exit(main())
