"""Read replicas: reads go to a current streaming standby, anything else to the primary.

The standby is real: `pg_basebackup -R` of an embedded primary, started with the embedded server's
own binaries on a socket of its own. Where a read was served is proven by what it sees: with the
standby's replay paused, an event written to the primary is missing from a read the standby served.
"""

import asyncio
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from db.embedded import EmbeddedPostgres, start_embedded
from db.engine import Database, DatabaseUnavailable
from db.filters import EventFilter
from db.migrate import upgrade_to_head
from db.replicas import Replica, ReplicaSet, WalSamples, check_interval_s
from db.repository import stream_events
from graphql_schema.context import Context
from tests.conftest import postgres_data_dir
from tests.support import valid_event

# The embedded server's binaries (found without importing pgserver, which registers atexit hooks).
_PGSERVER = importlib.util.find_spec("pgserver")
assert _PGSERVER is not None and _PGSERVER.submodule_search_locations
PG_BIN = Path(next(iter(_PGSERVER.submodule_search_locations))) / "pginstall" / "bin"
# As root, pgserver runs postgres as this system user (PostgreSQL refuses to run as root).
PG_USER = "pgserver" if os.geteuid() == 0 else None


# --- the servers ------------------------------------------------------------------------------


@dataclass
class Standby:
    """A streaming standby of an embedded primary, in a temporary folder of its own."""

    folder: Path
    url: str

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return _run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), *args], self.folder, check)

    def start(self) -> None:
        socket_dir = self.folder / "socket"
        self.pg_ctl("-w", "-l", str(self.data_dir / "standby.log"), "-o", f'-h "" -k {socket_dir}', "start")

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self.pg_ctl("-w", "-m", mode, "stop")

    def running(self) -> bool:
        return self.pg_ctl("status", check=False).returncode == 0


def _run_as_postgres(command: list[str], cwd: Path, check: bool) -> subprocess.CompletedProcess[bytes]:
    # Output to a file, not a pipe: pg_ctl's server keeps inherited pipes open and a read would hang.
    with tempfile.TemporaryFile() as output:
        result = subprocess.run(command, cwd=cwd, user=PG_USER, stdout=output, stderr=subprocess.STDOUT)
        output.seek(0)
        if check and result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({result.returncode}): {output.read().decode()}")
    return result


def make_standby(primary: EmbeddedPostgres) -> Standby:
    """pg_basebackup of `primary` (`-R`: standby.signal and primary_conninfo written), started."""
    folder = Path(tempfile.mkdtemp(prefix="activity-test-replica-"))
    folder.chmod(0o755)  # the postgres user must reach its data and socket folders
    for name in ("data", "socket"):
        (folder / name).mkdir(mode=0o700)
        if PG_USER is not None:
            shutil.chown(folder / name, PG_USER, PG_USER)
    primary_socket = parse_qs(urlsplit(primary.url).query)["host"][0]
    database = urlsplit(primary.url).path
    standby = Standby(folder, f"postgresql://postgres@{database}?host={folder / 'socket'}")
    try:
        _run_as_postgres(
            [
                str(PG_BIN / "pg_basebackup"),
                *("-D", str(standby.data_dir), "-h", primary_socket, "-U", "postgres"),
                *("-X", "stream", "-R", "--checkpoint=fast"),
            ],
            folder,
            check=True,
        )
        standby.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return standby


@pytest.fixture(scope="module")
def primary() -> Iterator[EmbeddedPostgres]:
    """An embedded primary of this module's own (the shared test server is never a replication source)."""
    with postgres_data_dir() as data_dir:
        embedded = start_embedded(data_dir)
        try:
            upgrade_to_head(embedded.url)
            yield embedded
        finally:
            embedded.release()


@pytest.fixture
async def standby(primary: EmbeddedPostgres) -> AsyncIterator[Standby]:
    """A fresh standby of an empty events table; stopped and removed afterwards, whatever happened."""
    connection = await asyncpg.connect(primary.url)
    try:
        await connection.execute("TRUNCATE events, idempotency_keys")
    finally:
        await connection.close()
    server = await asyncio.to_thread(make_standby, primary)
    try:
        yield server
    finally:
        try:
            await asyncio.to_thread(server.stop, "immediate")
        finally:
            shutil.rmtree(server.folder, ignore_errors=True)


# --- helpers ------------------------------------------------------------------------------------


@asynccontextmanager
async def service(
    primary: EmbeddedPostgres, standby: Standby, max_lag_ms: int
) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    """The app on `primary` with `standby` as its read replica; streaming from the 3rd row on."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=primary.url,
        database_replica_urls=standby.url,
        replica_max_lag_ms=max_lag_ms,
        stream_chunk_rows=2,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app.state.database


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 10.0) -> Any:
    """`check()`'s first truthy answer, asked every 50 ms; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if answer := await check():
            return answer
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        await asyncio.sleep(0.05)


async def in_use(database: Database) -> bool:
    assert database.replicas is not None
    return bool(database.replicas.in_use())


async def on(url: str, query: str, *args: Any) -> Any:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


async def record(client: httpx.AsyncClient, message: str, **headers: str) -> str:
    answer = await client.post("/api/events/", json=valid_event(message=message), headers=headers)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["id"]


async def listed(client: httpx.AsyncClient) -> list[str]:
    answer = await client.get("/api/events/")
    assert answer.status_code == 200, answer.text
    return [event["id"] for event in answer.json()["events"]]


async def graphql_listed(client: httpx.AsyncClient) -> list[str]:
    query = "{ events(first: 50, orderBy: OLDEST_FIRST) { nodes { id } } }"
    answer = await client.post("/graphql", json={"query": query})
    body = answer.json()
    assert answer.status_code == 200 and "errors" not in body, body
    return [node["id"] for node in body["data"]["events"]["nodes"]]


async def exported(client: httpx.AsyncClient) -> list[str]:
    answer = await client.get("/api/events/export")
    assert answer.status_code == 200, answer.text
    return [line.split('"id":"')[1][:36] for line in answer.text.splitlines() if line]


async def counted(client: httpx.AsyncClient) -> int:
    answer = await client.get("/api/events/stats")
    assert answer.status_code == 200, answer.text
    return sum(row["count"] for row in answer.json()["rows"])


async def replayed_everything(primary: EmbeddedPostgres, standby: Standby) -> bool:
    """Whether the standby has replayed all the primary has written so far."""
    position = await on(primary.url, "SELECT pg_current_wal_lsn()")
    return await on(standby.url, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", position)


# --- what goes where, on a real standby --------------------------------------------------------


@pytest.mark.slow
async def test_reads_are_served_by_a_current_replica(primary: EmbeddedPostgres, standby: Standby) -> None:
    async with service(primary, standby, max_lag_ms=60_000) as (client, database):
        await eventually(lambda: in_use(database))
        seen = [await record(client, f"seen {n}") for n in range(3)]  # 3 rows: the list streams
        await eventually(lambda: replayed_everything(primary, standby))
        await on(standby.url, "SELECT pg_wal_replay_pause()")
        unseen = await record(client, "written while the replica's replay is paused")

        # Well under 60 s behind: every read below is the replica's, which has not replayed `unseen`.
        assert await listed(client) == seen
        assert await graphql_listed(client) == seen
        assert await exported(client) == seen
        assert await counted(client) == 3
        assert (await client.get(f"/api/events/{unseen}")).status_code == 404
        assert (await client.get(f"/api/events/{seen[0]}")).status_code == 200
        lookups = await client.post(  # DataLoaders, and a page's count and hasNextPage
            "/graphql",
            json={
                "query": "query($seen: ID!, $unseen: ID!) { seen: event(id: $seen) { id } "
                'unseen: event(id: $unseen) { id } actor(email: "ade@example.com") { eventCount } '
                "events(first: 1, orderBy: OLDEST_FIRST) { totalCount pageInfo { hasNextPage } } "
                "eventStats { rows { count } } }",
                "variables": {"seen": seen[0], "unseen": unseen},
            },
        )
        assert lookups.json()["data"] == {
            "seen": {"id": seen[0]},
            "unseen": None,
            "actor": {"eventCount": 3},
            "events": {"totalCount": 3, "pageInfo": {"hasNextPage": True}},
            "eventStats": {"rows": [{"count": 3}]},
        }, lookups.json()
        # ... while the primary has it: the write went there.
        assert await on(primary.url, "SELECT count(*) FROM events WHERE id = $1", uuid.UUID(unseen)) == 1

        await on(standby.url, "SELECT pg_wal_replay_resume()")
        assert await eventually(lambda: _lists(client, unseen))


async def _lists(client: httpx.AsyncClient, event_id: str) -> bool:
    return event_id in await listed(client)


@pytest.mark.slow
async def test_a_lagging_replica_is_skipped_until_it_catches_up(
    primary: EmbeddedPostgres, standby: Standby
) -> None:
    async with service(primary, standby, max_lag_ms=300) as (client, database):
        await eventually(lambda: in_use(database))
        await eventually(lambda: replayed_everything(primary, standby))
        await on(standby.url, "SELECT pg_wal_replay_pause()")
        new = await record(client, "written while the replica's replay is paused")
        written_at = time.monotonic()  # committed by now

        # Up to 300 ms after the commit the replica may still serve reads (it was current just
        # before); from then on it lacks a write older than that, whatever the monitor's timing.
        await asyncio.sleep(max(written_at + 0.3 - time.monotonic(), 0) + 0.01)
        assert not await in_use(database)
        assert await listed(client) == [new]
        assert await graphql_listed(client) == [new]
        assert (await client.get(f"/api/events/{new}")).status_code == 200
        # The deadline lapses first; the monitor's next check says why.
        assert database.replicas is not None
        replica = database.replicas.replicas[0]
        await eventually(lambda: _says(replica.problem, "lags by more than 300 ms"), timeout_s=3)

        await on(standby.url, "SELECT pg_wal_replay_resume()")
        await eventually(lambda: in_use(database), timeout_s=3)


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def _says(problem: str | None, words: str) -> bool:
    return words in (problem or "")


@pytest.mark.slow
async def test_a_paused_replica_of_an_idle_primary_is_current(
    primary: EmbeddedPostgres, standby: Standby
) -> None:
    # Replay timestamps would call it hours behind (nothing was replayed for long); it misses nothing.
    async with service(primary, standby, max_lag_ms=300) as (_client, database):
        await eventually(lambda: in_use(database))
        await eventually(lambda: replayed_everything(primary, standby))
        await on(standby.url, "SELECT pg_wal_replay_pause()")
        await asyncio.sleep(1.0)  # more than three times the allowed lag, with nothing written
        # (Eventually: a starved event loop may let the deadline lapse between checks; a replica
        # that lacked anything the primary wrote could never be in use again.)
        await eventually(lambda: in_use(database), timeout_s=3)
        assert database.replicas is not None
        lag = database.replicas.replicas[0].lag_s
        assert lag is not None and lag < 0.3


@pytest.mark.slow
async def test_writes_and_idempotency_checks_go_to_the_primary(
    primary: EmbeddedPostgres, standby: Standby
) -> None:
    async with service(primary, standby, max_lag_ms=60_000) as (client, database):
        await eventually(lambda: in_use(database))
        await on(standby.url, "SELECT pg_wal_replay_pause()")
        # The replica is read-only: each of these would fail there.
        first = await record(client, "once", **{"Idempotency-Key": "replica-test-key"})
        retry = await client.post(
            "/api/events/", json=valid_event(message="once"), headers={"Idempotency-Key": "replica-test-key"}
        )
        # The key is found (on the primary: the paused replica has never seen it).
        assert retry.status_code == 200 and retry.json()["id"] == first
        batch = await client.post("/api/events/batch", json=[valid_event(message="batch")])
        assert batch.status_code in (200, 201), batch.text
        # A mutation's answer reads its own write (the actor's counts), so from the primary too.
        mutation = await client.post(
            "/graphql",
            json={
                "query": "mutation($input: RecordEventInput!) "
                "{ recordEvent(input: $input) { id actor { eventCount } } }",
                "variables": {"input": valid_event(message="mutation", email="new@example.com")},
            },
        )
        assert mutation.json()["data"]["recordEvent"]["actor"] == {"eventCount": 1}, mutation.json()
        assert await on(primary.url, "SELECT count(*) FROM events") == 3
        assert await on(standby.url, "SELECT count(*) FROM events") == 0
        assert await in_use(database)  # the replica was current (well under 60 s) all along


@pytest.mark.slow
async def test_an_unreachable_replica_is_skipped_without_errors(
    primary: EmbeddedPostgres, standby: Standby
) -> None:
    async with service(primary, standby, max_lag_ms=60_000) as (client, database):
        await eventually(lambda: in_use(database))
        events = [await record(client, f"event {n}") for n in range(3)]
        await eventually(lambda: replayed_everything(primary, standby))
        await asyncio.to_thread(standby.stop, "immediate")

        # At once, before the monitor may have noticed: every kind of read still answers, in full.
        for _ in range(3):
            assert await listed(client) == events
            assert await graphql_listed(client) == events
            assert await exported(client) == events
            assert await counted(client) == 3
            assert (await client.get(f"/api/events/{events[0]}")).status_code == 200
        await eventually(lambda: _not(in_use(database)), timeout_s=3)
        assert (await client.get("/api/ready")).status_code == 200
        await eventually(lambda: _replica_metrics(client, standby, "in_use 0.0", "lag_seconds +Inf"))

        # Back up: used again.
        await asyncio.to_thread(standby.start)
        await eventually(lambda: in_use(database), timeout_s=10)
        assert await listed(client) == events
        await eventually(lambda: _replica_metrics(client, standby, "in_use 1.0"))


async def _replica_metrics(client: httpx.AsyncClient, standby: Standby, *expected: str) -> bool:
    """Whether /metrics shows each `expected` ("in_use 0.0", ...) for `standby`'s series."""
    text = (await client.get("/metrics")).text
    return all(
        f'activity_db_replica_{metric}{{replica="{standby.url}"}} {value}' in text
        for metric, value in (item.split(" ") for item in expected)
    )


@pytest.mark.slow
async def test_a_replica_down_at_start_up_is_used_once_it_is_up(
    primary: EmbeddedPostgres, standby: Standby
) -> None:
    await asyncio.to_thread(standby.stop)
    async with service(primary, standby, max_lag_ms=60_000) as (client, database):
        event = await record(client, "written while the replica is down")
        assert await listed(client) == [event]
        assert not await in_use(database)
        await asyncio.to_thread(standby.start)
        await eventually(lambda: in_use(database), timeout_s=10)
        await eventually(lambda: replayed_everything(primary, standby))
        await on(standby.url, "SELECT pg_wal_replay_pause()")
        unseen = await record(client, "written while the replica's replay is paused")
        assert await listed(client) == [event]  # the replica's answer
        assert await on(primary.url, "SELECT count(*) FROM events WHERE id = $1", uuid.UUID(unseen)) == 1


@pytest.mark.slow
async def test_a_replica_failing_under_a_read_hands_it_to_the_primary(
    primary: EmbeddedPostgres, standby: Standby
) -> None:
    # The monitor is stopped and the replica declared current: the reads go to it, and find it down.
    async with service(primary, standby, max_lag_ms=60_000) as (client, database):
        replicas = database.replicas
        assert replicas is not None
        await eventually(lambda: in_use(database))
        events = [await record(client, f"event {n}") for n in range(3)]
        await eventually(lambda: replayed_everything(primary, standby))
        for _ in range(4):  # warm the replica's pool: the reads meet broken pooled connections
            assert await listed(client) == events
        await replicas.stop_monitor()
        await asyncio.to_thread(standby.stop, "immediate")
        for read in (listed, graphql_listed, exported):  # one statement; a cursor in a transaction
            replicas.replicas[0].usable_until = float("inf")
            assert await read(client) == events
            assert replicas.replicas[0].usable_until == 0.0  # skipped from then on


# --- the pieces, without servers ----------------------------------------------------------------


def test_a_replica_is_current_as_of_the_last_primary_position_it_has_replayed() -> None:
    samples = WalSamples(keep_s=1.0)
    for taken_at, position in ((10.0, 100), (10.1, 100), (10.2, 250), (10.3, 400)):
        samples.add(taken_at, position)
    assert samples.current_as_of(400) == 10.3
    assert samples.current_as_of(399) == 10.2
    assert samples.current_as_of(249) == 10.1  # the idle stretch: the latest time at 100
    assert samples.current_as_of(100) == 10.1
    assert samples.current_as_of(99) is None  # further behind than anything kept


def test_positions_too_old_to_prove_anything_are_dropped() -> None:
    samples = WalSamples(keep_s=1.0)
    for tenth in range(50):
        samples.add(tenth / 10, tenth)
    oldest_taken_at, _ = samples.samples[0]
    assert oldest_taken_at >= 4.9 - 1.0
    assert samples.current_as_of(10) is None


def test_the_lag_is_measured_four_times_per_allowed_lag_within_bounds() -> None:
    assert check_interval_s(1_000) == 0.25
    assert check_interval_s(600) == 0.15
    assert check_interval_s(50) == 0.1


def test_replica_urls_are_a_comma_separated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_REPLICA_URLS", "postgresql+asyncpg://r1/db, postgres://r2/db")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_replica_urls == ["postgresql://r1/db", "postgresql://r2/db"]
    assert Settings(_env_file=None, database_replica_urls="").database_replica_urls == []  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="postgresql://"):
        Settings(_env_file=None, database_replica_urls="mysql://r/db")  # type: ignore[call-arg]


async def test_live_events_and_mutations_read_their_loads_from_the_primary(database: Database) -> None:
    context = Context(database, Settings(_env_file=None), None, None, None)  # type: ignore[arg-type, call-arg]
    assert context.loaders.replica_reads
    context.renew_loaders()  # what a subscription does before resolving each live event
    assert not context.loaders.replica_reads


async def test_without_replicas_reads_use_the_primary_pool(database: Database) -> None:
    assert database.replicas is None
    async with database.replica_read() as connection:
        assert await connection.fetchval("SELECT pg_is_in_recovery()") is False
    async with database.read_transaction() as connection:
        assert connection.is_in_transaction()


@pytest.mark.slow
async def test_a_standby_of_another_cluster_is_never_used(database_url: str, standby: Standby) -> None:
    # The shared test server as the primary, and a standby of this module's own primary.
    database = await Database.connect(database_url, min_size=1, max_size=1, replica_urls=[standby.url])
    try:
        assert database.replicas is not None
        replica = database.replicas.replicas[0]
        await eventually(lambda: _says(replica.problem, "a standby of another cluster"))
        assert not await in_use(database)
    finally:
        await database.close()


async def test_a_primary_given_as_a_replica_is_never_used(database_url: str) -> None:
    database = await Database.connect(database_url, min_size=1, max_size=1, replica_urls=[database_url])
    try:
        assert database.replicas is not None
        replica = database.replicas.replicas[0]
        await eventually(lambda: _says(replica.problem, "is not a standby"))
        assert not await in_use(database)
        async with database.replica_read() as connection:  # the primary's, plainly
            assert await connection.fetchval("SELECT 1") == 1
    finally:
        await database.close()


# --- falling back inside a read, step by step (a scripted replica connection, the real primary) ----


class _ScriptedReplica:
    """A replica connection whose BEGIN works and whose statements fail where `fails` says.

    `fails` is one of "statement", "cursor", "first fetch" or "second fetch"; a fetch that does not
    fail answers one made-up row.
    """

    def __init__(self, fails: str) -> None:
        self.fails = fails
        self.fetches = 0
        self.ended: list[str] = []

    def _gone(self) -> asyncpg.ConnectionDoesNotExistError:
        return asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    async def fetch(self, *_: Any, **__: Any) -> list[Any]:
        raise self._gone()

    def transaction(self) -> "_ScriptedReplica":
        return self

    async def start(self) -> None:
        pass

    async def commit(self) -> None:
        self.ended.append("commit")

    async def rollback(self) -> None:
        self.ended.append("rollback")

    def is_closed(self) -> bool:
        return False

    async def cursor(self, *_: Any, **__: Any) -> "_ScriptedCursor":
        if self.fails == "cursor":
            raise self._gone()
        return _ScriptedCursor(self)

    async def fetch_rows(self, count: int) -> list[Any]:
        self.fetches += 1
        if self.fails == f"{('first', 'second')[self.fetches - 1]} fetch":
            raise self._gone()
        return ["a row the replica had"] * count


class _ScriptedPool:
    def __init__(self, connection: _ScriptedReplica) -> None:
        self.connection = connection
        self.released = 0
        self.expired = False

    def get_max_size(self) -> int:
        return 1

    async def acquire(self, **_: Any) -> _ScriptedReplica:
        return self.connection

    async def release(self, _: Any) -> None:
        self.released += 1

    async def expire_connections(self) -> None:
        self.expired = True


class _ScriptedCursor:
    def __init__(self, connection: _ScriptedReplica) -> None:
        self._connection = connection

    async def fetch(self, count: int, **_: Any) -> list[Any]:
        return await self._connection.fetch_rows(count)


def _scripted(database: Database, fails: str) -> tuple[ReplicaSet, _ScriptedPool]:
    pool = _ScriptedPool(_ScriptedReplica(fails))
    replica = Replica("postgresql://replica.invalid/activity", pool, usable_until=float("inf"))  # type: ignore[arg-type]
    replicas = ReplicaSet(
        database.url, [replica], max_lag_ms=1_000, acquire_timeout_s=1.0, connect_timeout_s=1.0
    )
    return replicas, pool


async def _three_events(client: httpx.AsyncClient) -> list[str]:
    return [await record(client, f"event {n}") for n in range(3)]


async def test_a_statement_the_replica_fails_runs_on_the_primary(
    database: Database, client: httpx.AsyncClient
) -> None:
    events = await _three_events(client)
    replicas, pool = _scripted(database, "statement")
    async with replicas.read(database, explicit_transaction=False) as connection:
        rows = await connection.fetch("SELECT id FROM events ORDER BY created_at, id")
    assert [str(row["id"]) for row in rows] == events
    assert pool.released == 1 and pool.expired  # the replica's connection back, its pool renewed
    assert replicas.pick() is None  # skipped until the monitor hears from it


@pytest.mark.parametrize("fails", ["cursor", "first fetch"])
async def test_a_stream_the_replica_fails_before_any_rows_comes_from_the_primary(
    database: Database, client: httpx.AsyncClient, fails: str
) -> None:
    events = await _three_events(client)
    replicas, pool = _scripted(database, fails)
    async with replicas.read(database, explicit_transaction=True) as connection:
        chunks = [chunk async for chunk in stream_events(connection, EventFilter(), chunk_rows=2)]
    assert [str(row["id"]) for chunk in chunks for row in chunk] == events
    assert pool.connection.ended == ["rollback"] and pool.released == 1


async def test_a_stream_the_replica_fails_after_rows_were_read_fails_as_the_primary_would(
    database: Database,
) -> None:
    replicas, pool = _scripted(database, "second fetch")
    with pytest.raises(DatabaseUnavailable):
        async with replicas.read(database, explicit_transaction=True) as connection:
            async for _ in stream_events(connection, EventFilter(), chunk_rows=2):
                pass
    # Not continued on the primary (another snapshot); the replica's transaction rolled back.
    assert pool.connection.ended == ["rollback"] and pool.released == 1
