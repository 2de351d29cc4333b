"""The `activity-service` command: serve, migrate, prune, keys."""

import asyncio
import contextlib
import copy
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import asyncpg
import typer
import uvicorn
from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from api.settings import Settings
from db import api_keys
from db.embedded import start_embedded
from db.engine import CONNECTION_ERRORS, Database
from db.migrate import upgrade_to_head
from db.retention import forget_idempotency_keys_before, prune_events_before
from db.urls import masked_url

T = TypeVar("T")

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="activity-service: an event log.")

ANNOUNCE_WAIT_AFTER_S = 2.0

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
    """Try to connect until `timeout_s` has passed; fail with one line if the database never answers.

    A database that is merely slow to come up (compose, a restart) is waited for; the wait is
    announced once it has lasted a couple of seconds, so a quick failure stays a single line.
    """
    started = time.monotonic()
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
            waited = time.monotonic() - started
            if waited >= timeout_s:
                reason = str(error) or type(error).__name__
                fail(f"cannot reach the database at {masked_url(url)} (waited {waited:.0f} s): {reason}")
            if not announced and waited >= ANNOUNCE_WAIT_AFTER_S:
                typer.echo(
                    f"activity-service: waiting up to {timeout_s:.0f} s for the database at "
                    f"{masked_url(url)} ...",
                    err=True,
                )
                announced = True
            time.sleep(0.5)


async def _probe(url: str, timeout_s: float) -> None:
    connection = await asyncpg.connect(url, timeout=timeout_s)
    await connection.close()


class CleanExitServer(uvicorn.Server):
    """uvicorn, but a SIGTERM/SIGINT it has handled gracefully ends the process with status 0.

    Plain uvicorn re-raises the signal after its graceful shutdown, so the process dies "killed by
    SIGTERM" (status -15) even though every in-flight request was finished: supervisors then
    report a crash for an orderly stop.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


class NoWebsocketQueryStrings(logging.Filter):
    """Drops the query string from uvicorn's websocket handshake lines: it may carry a token.

    uvicorn logs `"WebSocket /graphql?token=..." [accepted]` (or 403) with the path and query string
    as one argument; our own request log already leaves query strings out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and '"WebSocket %s"' in record.msg and isinstance(record.args, tuple):
            record.args = tuple(
                argument.split("?", 1)[0] if isinstance(argument, str) else argument
                for argument in record.args
            )
        return True


def log_config(level: str) -> dict[str, object]:
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for name in OWN_LOGGERS:
        config["loggers"][name] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    # On the handler every uvicorn.error line goes through (a logger's filter would miss propagated ones).
    config["filters"] = {"no_websocket_query_strings": {"()": NoWebsocketQueryStrings}}
    config["handlers"]["default"]["filters"] = ["no_websocket_query_strings"]
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
    config = uvicorn.Config(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(settings.log_level),
        log_level=settings.log_level.lower(),
        access_log=False,  # api.middleware logs one line per request, with its request id
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )
    if workers > 1:
        # The supervisor forwards SIGTERM to the workers, waits for them, and returns.
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = CleanExitServer(config)
    server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn's own "startup failed" code; the reason is already logged


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
    """Delete events older than the given age in small batches (safe while serving), and expired
    idempotency keys."""
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
    key_window = timedelta(hours=settings.idempotency_window_hours)
    try:
        deleted, forgotten = asyncio.run(_prune(url, cutoff, batch_size, key_window))
    finally:
        if embedded is not None:
            embedded.release()
    typer.echo(f"activity-service: deleted {deleted} events created before {cutoff.isoformat()}")
    typer.echo(f"activity-service: forgot {forgotten} idempotency keys older than {key_window}")


async def _prune(url: str, cutoff: datetime, batch_size: int, key_window: timedelta) -> tuple[int, int]:
    database = await Database.connect(url, min_size=1, max_size=1)
    try:
        deleted = await prune_events_before(database, cutoff, batch_size=batch_size)
        return deleted, await forget_idempotency_keys_before(database, key_window)
    finally:
        await database.close()


keys_cli = typer.Typer(no_args_is_help=True, help="Manage API keys (create, list, revoke).")
cli.add_typer(keys_cli, name="keys")


def _run_with_database(operation: Callable[[Database], Awaitable[T]]) -> T:
    """Run `operation` on the configured database (starting the embedded one if need be)."""
    settings = load_settings()
    url = settings.external_database_url
    embedded = None
    if url is None:
        embedded = start_embedded(settings.activity_data_dir)
        url = embedded.url
        upgrade_to_head(url)
    else:
        wait_for_database(url, settings.startup_wait_s)

    async def run() -> T:
        database = await Database.connect(url, min_size=1, max_size=1)
        try:
            return await operation(database)
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.release()


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    scope: Annotated[list[str], typer.Option("--scope", help=f"Repeatable: {', '.join(api_keys.SCOPES)}.")],
) -> None:
    """Create a key and print it once; only its hash is stored."""

    async def create(database: Database) -> tuple[api_keys.ApiKeyInfo, str]:
        async with database.transaction() as connection:
            return await api_keys.create_api_key(connection, name, scope)

    try:
        info, raw_key = _run_with_database(create)
    except ValueError as error:
        fail(str(error))
        return
    typer.echo(f"created key {info.id} ({info.name}) with scopes {' '.join(info.scopes)}", err=True)
    typer.echo("the key is shown this once; store it now:", err=True)
    typer.echo(raw_key)


@keys_cli.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves): id, name, scopes, created, revoked."""

    async def fetch(database: Database) -> list[api_keys.ApiKeyInfo]:
        async with database.transaction() as connection:
            return await api_keys.list_api_keys(connection)

    for key in _run_with_database(fetch):
        revoked = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        typer.echo(f"{key.id}\t{key.name}\t{','.join(key.scopes)}\t{key.created_at.isoformat()}\t{revoked}")


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`).")]) -> None:
    """Revoke a key; requests with it are refused from then on."""

    async def revoke(database: Database) -> bool:
        async with database.transaction() as connection:
            return await api_keys.revoke_api_key(connection, key_id)

    if not _run_with_database(revoke):
        fail(f"no active key with id {key_id}")
    typer.echo(f"revoked key {key_id}")


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    sys.exit(main())
