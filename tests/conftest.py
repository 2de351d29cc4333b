"""A real PostgreSQL for the whole run: embedded by default, TEST_DATABASE_URL for another server.

Each run gets a fresh database, migrated once; each test starts with an empty events table.
Tests write only to temporary folders (see hypothesis_storage and tests/support.py's service_env).
"""

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis.configuration import set_hypothesis_home_dir

from api.app import create_app
from api.settings import Settings
from db.api_keys import KeyVerifier, create_api_key, revoke_api_key
from db.embedded import EmbeddedPostgres, start_embedded
from db.engine import Database
from db.migrate import upgrade_to_head
from db.urls import as_libpq_url
from graphql_schema.graphiql_assets import FetchError, fetch_assets
from tests.support import (
    ResetConnection,
    app_sharing_services,
    run_statement,
    running_service,
    service_env,
    with_database,
)

# Fixtures that start a service or PostgreSQL process: every test using one is marked `slow`
# (pytest_collection_modifyitems), so a new test that needs a process is left out of the fast subset
# without anyone having to remember the marker.
PROCESS_FIXTURES = frozenset({"live_server", "own_server", "embedded_data_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def hypothesis_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis (under schemathesis) keeps its caches in this run's temporary folder.

    Its default is ./.hypothesis in the working directory, i.e. inside the repository; the fuzz tests
    run with `database=None`, but Hypothesis still writes its constants and Unicode caches there.
    """
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@contextmanager
def postgres_data_dir() -> Iterator[Path]:
    """A fresh folder for an embedded server's data, removed afterwards.

    Not under pytest's tmp_path: pytest resets its base folder to mode 0700 whenever a session
    starts, which locks out the `pgserver` system user that runs postgres when we are root.
    """
    parent = Path(tempfile.mkdtemp(prefix="activity-test-pg-"))
    try:
        yield parent / "data"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data folder for a test that runs its own embedded PostgreSQL."""
    with postgres_data_dir() as path:
        yield path


@pytest.fixture
def own_server(embedded_data_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A migrated PostgreSQL this test may stop and start (never the shared test server)."""
    embedded = start_embedded(embedded_data_dir)
    upgrade_to_head(embedded.url)
    try:
        yield embedded
    finally:
        embedded.release()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL on the server under test (its default database), with the right to create databases."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield as_libpq_url(external)
        return
    with postgres_data_dir() as data_dir:
        embedded = start_embedded(data_dir)
        try:
            yield embedded.url
        finally:
            embedded.release()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A database created for this run and migrated to head; dropped afterwards."""
    name = f"activity_test_{uuid.uuid4().hex[:12]}"
    run_statement(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        run_statement(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """Settings pointing at the test database, ignoring any developer .env file."""
    return Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running (pool open) for the whole session."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def database(app: FastAPI) -> Database:
    return app.state.database


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process (ASGI)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture(scope="session")
async def reset_connection(database_url: str) -> AsyncIterator[ResetConnection]:
    """One connection for emptying the tables between tests, kept for the session."""
    connection = ResetConnection(database_url)
    yield connection
    await connection.close()


# Up to this many events are deleted rather than truncated (see empty_events_table).
_DELETE_AT_MOST = 2_000


@pytest.fixture(autouse=True)
async def empty_events_table(reset_connection: ResetConnection) -> None:
    """Every test starts with no events, no idempotency keys and no hourly counts."""
    # TRUNCATE makes new files for every partition and index of `events` (~30 ms on a plain table,
    # ~90 ms partitioned), and a new connection per test costs ~15 ms: together they were most of
    # the fast subset's time. So: one connection for the session; nothing at all when the test
    # wrote nothing; DELETE (a few ms) when it wrote a few rows; TRUNCATE only after bulk writes.
    written = await reset_connection.fetchval(
        f"SELECT (SELECT count(*) FROM (SELECT FROM events LIMIT {_DELETE_AT_MOST + 1}) AS few) "
        "+ (SELECT count(*) FROM (SELECT FROM idempotency_keys LIMIT 1) AS one)"
    )
    if written > _DELETE_AT_MOST:
        await reset_connection.execute("TRUNCATE events, idempotency_keys")
    elif written:
        # The rollups too: a test may have written rows past the triggers.
        await reset_connection.execute(
            "DELETE FROM events; DELETE FROM idempotency_keys; DELETE FROM event_counts_hourly"
        )


@pytest.fixture(scope="session")
def graphiql_files() -> str | None:
    """Fetch GraphiQL's pinned files (a no-op when present); None once they are there, else why not.

    This must happen before any service that a browser test uses starts: a service decides once, at
    start-up, whether to mount the files' folder, but builds its GraphiQL page at the first request.
    Started before the fetch, it serves a page pointing at files that all answer 404, and GraphiQL
    never gets past "Loading..." (the 30 s timeouts of a full run, where an earlier test had already
    started the shared live server).
    """
    try:
        fetch_assets()
    except FetchError as error:
        return str(error)
    return None


# Debian's Chromium, which the browser tests drive through playwright (its own download is not possible here).
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Chromium for the browser tests; without it they skip, saying so loudly."""
    if not CHROMIUM.exists():
        pytest.skip(f"BROWSER TEST SKIPPED: no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def live_server(database_url: str, graphiql_files: str | None) -> Iterator[str]:
    """A real uvicorn (one worker) serving the test database, GraphiQL files included; yields its base URL."""
    with running_service(service_env(DATABASE_URL=database_url)) as (base_url, _process):
        yield base_url


@pytest.fixture
async def keys(database: Database) -> dict[str, str]:
    """One key per kind of caller the matrix tries; revoked: valid once, then revoked."""
    made: dict[str, str] = {}
    async with database.transaction() as connection:
        await connection.execute("TRUNCATE api_keys")
        for kind, scopes in (
            ("read", ["events:read"]),
            ("write", ["events:write"]),
            ("admin", ["admin"]),
            ("revoked", ["events:read", "events:write"]),
        ):
            info, made[kind] = await create_api_key(connection, f"{kind} key", scopes)
        await revoke_api_key(connection, info.id)
    return made


@pytest.fixture
async def auth_client(app: FastAPI, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app with AUTH_REQUIRED on (no caching, so revocation shows at once)."""
    guarded = app_sharing_services(
        app,
        settings.model_copy(update={"auth_required": True}),
        key_verifier=KeyVerifier(app.state.database, cache_s=0),
    )
    transport = httpx.ASGITransport(app=guarded)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    """A brand-new database on the test server, with no tables; dropped afterwards."""
    name = f"activity_migrate_{uuid.uuid4().hex[:12]}"
    run_statement(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        run_statement(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
