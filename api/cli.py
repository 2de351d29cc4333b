"""The `activity-service` command: serve, migrate, prune, keys."""

import asyncio
import contextlib
import copy
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, NoReturn, TypeVar

import asyncpg
import typer
import uvicorn
from pydantic import ValidationError

from api.database_setup import DatabaseNotReady, prepared_database
from api.metrics_workers import MetricsAwareMultiprocess, shared_metrics_directory
from api.settings import Settings
from db import api_keys
from db.engine import Database
from db.retention import forget_idempotency_keys_before, prune_events_before
from db.urls import masked_url

T = TypeVar("T")

# Plain (click) help rather than typer's rich panels: those print a type such as `<bool>` beside
# every flag, --help included; plain help shows a flag bare and an option with its metavar.
cli = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="activity-service: an event log."
)

# Our own packages log through uvicorn's handler, so every worker prints the same way.
OWN_LOGGERS = ("api", "db", "rest", "graphql_schema")


def fail(message: str) -> NoReturn:
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


def say(line: str) -> None:
    """A progress line for the operator, on stderr so that stdout stays the command's result."""
    typer.echo(f"activity-service: {line}", err=True)


def with_prepared_database(
    settings: Settings, operation: Callable[[str], Awaitable[T]], *, migrate_external: bool
) -> T:
    """Run `operation` on the URL of the prepared database (api.database_setup), then let it go.

    A database that cannot be used becomes one line on stderr and exit status 1.
    """

    async def run() -> T:
        async with prepared_database(settings, migrate_external=migrate_external, announce=say) as url:
            return await operation(url)

    try:
        return asyncio.run(run())
    except DatabaseNotReady as error:
        fail(str(error))


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
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="TCP port.")] = 5000,
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="Worker processes.")] = 1,
    migrate: Annotated[
        bool, typer.Option("--migrate", help="Apply migrations first (external database).")
    ] = False,
) -> None:
    """Serve the REST and GraphQL API with uvicorn."""
    settings = load_settings()
    if settings.external_database_url is None:
        # Each worker's lifespan starts (or attaches to) the embedded server through the same
        # set-up. Not held here too: pgserver keeps one handle per folder per process, so with one
        # worker (the lifespan runs in this process) the lifespan's release would drop ours.
        say(f"embedded PostgreSQL, data in {settings.activity_data_dir.resolve()}")
    else:
        # Waited for (and migrated) here, once, so a database that is down or wrong is one line
        # and a non-zero exit before any worker starts.
        with_prepared_database(settings, _nothing, migrate_external=migrate)
    config = uvicorn.Config(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(settings.log_level),
        log_level=settings.log_level.lower(),
        access_log=False,  # api.middleware logs one line per request, with its request id
        ws_per_message_deflate=settings.websocket_compression,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )
    # Before any worker starts: prometheus-client reads it when a worker first imports it.
    with shared_metrics_directory(workers):
        if workers > 1:
            # The supervisor forwards SIGTERM to the workers, waits for them, and returns.
            MetricsAwareMultiprocess(config, sockets=[config.bind_socket()]).run()
            return
        server = CleanExitServer(config)
        server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn's own "startup failed" code; the reason is already logged


async def _nothing(url: str) -> None:
    """Preparing the database is all `serve` needs before uvicorn starts."""


@cli.command()
def migrate() -> None:
    """Bring the configured database's schema to the newest revision (Alembic upgrade head)."""
    settings = load_settings()
    with_prepared_database(settings, _nothing, migrate_external=True)
    url = settings.external_database_url
    where = masked_url(url) if url else f"the embedded database in {settings.activity_data_dir.resolve()}"
    say(f"{where} is at the newest schema revision")


_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """`90d`, `12h`, `2w`, `30m`, `45s` (or combinations such as `1d12h`) as a timedelta."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise typer.BadParameter(f"{text!r} is not an age like 90d, 12h, 2w, 30m or 45s")
    return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


_SPOKEN_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def describe_duration(duration: timedelta) -> str:
    """A duration as people say it: `90 days`, `1 day and 12 hours`, `30 minutes`."""
    remaining = round(duration.total_seconds())
    parts = []
    for unit, seconds in _SPOKEN_UNITS:
        count, remaining = divmod(remaining, seconds)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    if not parts:
        return "0 seconds"
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@cli.command()
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", metavar="AGE", help="Age, e.g. 90d, 12h, 2w or 1d12h.")
    ],
    batch_size: Annotated[
        int, typer.Option(min=1, metavar="ROWS", help="Rows per delete transaction.")
    ] = 5_000,
) -> None:
    """Delete events older than the given age: whole expired partitions at once, the rest in small
    batches (safe while serving); and expired idempotency keys."""
    age = parse_age(older_than)
    settings = load_settings()
    cutoff = datetime.now(UTC) - age
    key_window = timedelta(hours=settings.idempotency_window_hours)

    async def run(database: Database) -> tuple[int, int]:
        deleted = await prune_events_before(database, cutoff, batch_size=batch_size)
        return deleted, await forget_idempotency_keys_before(database, key_window)

    deleted, forgotten = _run_with_database(run, settings)
    typer.echo(
        f"activity-service: deleted {_plural(deleted, 'event')} older than {describe_duration(age)} "
        f"(created before {cutoff:%Y-%m-%d %H:%M:%S} UTC)"
    )
    typer.echo(
        f"activity-service: forgot {_plural(forgotten, 'idempotency key')} older than "
        f"{describe_duration(key_window)} (IDEMPOTENCY_WINDOW_HOURS)"
    )


def _run_on_schema(settings: Settings, operation: Callable[[str], Awaitable[T]]) -> T:
    """`operation` on the prepared database; an external one without our tables is one clear line.

    An external database is not migrated here: its schema changes only when its operator says so
    (`migrate`, `serve --migrate`, MIGRATE_ON_START). The embedded one always is.
    """
    try:
        return with_prepared_database(settings, operation, migrate_external=False)
    except asyncpg.UndefinedTableError as error:
        fail(
            f"the database has no activity-service tables yet ({error}); run `activity-service migrate` first"
        )


keys_cli = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Manage API keys (create, list, revoke)."
)
cli.add_typer(keys_cli, name="keys")


def _run_with_database(operation: Callable[[Database], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run `operation` on a one-connection pool on the prepared database.

    On the server itself, never through a transaction pooler (DATABASE_DIRECT_URL): maintenance
    such as dropping partitions is DDL, and needs none of a pooler's sharing.
    """
    settings = settings or load_settings()

    async def run(url: str) -> T:
        database = await Database.connect(settings.database_direct_url or url, min_size=1, max_size=1)
        try:
            return await operation(database)
        finally:
            await database.close()

    return _run_on_schema(settings, run)


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(metavar="NAME", help="Who or what the key is for.")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", metavar="SCOPE", help=f"Repeatable: {', '.join(api_keys.SCOPES)}."),
    ],
) -> None:
    """Create a key and print it once; only its hash is stored."""

    async def create(database: Database) -> tuple[api_keys.ApiKeyInfo, str]:
        async with database.transaction() as connection:
            return await api_keys.create_api_key(connection, name, scope)

    try:
        info, raw_key = _run_with_database(create)
    except ValueError as error:
        fail(str(error))
    typer.echo(f"created key {info.id} ({info.name}) with scopes {' '.join(info.scopes)}", err=True)
    typer.echo("the key is shown this once; store it now:", err=True)
    typer.echo(raw_key)


KEY_LIST_HEADER = ("ID", "NAME", "SCOPES", "CREATED", "STATUS")


@keys_cli.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves): id, name, scopes, created, status."""

    async def fetch(database: Database) -> list[api_keys.ApiKeyInfo]:
        async with database.transaction() as connection:
            return await api_keys.list_api_keys(connection)

    keys = _run_with_database(fetch)
    rows = [KEY_LIST_HEADER]
    for key in keys:
        status = f"revoked {key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else "active"
        rows.append((key.id, key.name, ",".join(key.scopes), f"{key.created_at:%Y-%m-%d %H:%M:%S}", status))
    widths = [max(len(row[column]) for row in rows) for column in range(len(KEY_LIST_HEADER))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not keys:
        say("no API keys yet; create one with `keys create --name NAME --scope SCOPE`")


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (see `keys list`).")],
) -> None:
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
