"""Behind PgBouncer in transaction mode: the deployment docs/scaling.md describes, really run.

PgBouncer (Debian's package; 1.18 on Debian 12) hands each transaction whichever server connection is
free, so nothing may outlive a transaction: no named prepared statements (asyncpg caches them per
connection), no startup parameters it does not know (`jit`, `statement_timeout`), no LISTEN. The
service runs there with DATABASE_POOL_MODE=transaction and a DATABASE_DIRECT_URL for the live feed's
LISTEN and for migrations.
"""

import asyncio
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import asyncpg
import httpx
import pytest
import websockets

from db.batches import IDEMPOTENCY_KEY_FIELD
from tests.support import free_port, running_service, service_env, stop_process, valid_event

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

pytestmark = pytest.mark.slow  # starts PgBouncer and a service


async def _server_address(url: str) -> tuple[str, int, str, str]:
    """(host or socket folder, port, user, database) of the server behind `url`, as it reports them."""
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT inet_server_addr()::text AS address, current_setting('port')::int AS port, "
            "current_setting('unix_socket_directories') AS sockets, current_user AS user_name, "
            "current_database() AS database_name"
        )
    finally:
        await connection.close()
    host = row["address"].split("/")[0] if row["address"] else row["sockets"].split(",")[0].strip()
    return host, row["port"], row["user_name"], row["database_name"]


@contextmanager
def running_pgbouncer(database_url: str) -> Iterator[str]:
    """PgBouncer in transaction mode in front of `database_url`'s database; yields a URL through it."""
    if not Path(PGBOUNCER).exists():
        pytest.skip("PGBOUNCER TEST SKIPPED: no pgbouncer (apt-get install -y pgbouncer)")
    host, port, user, database = asyncio.run(_server_address(database_url))
    listen_port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="activity-test-pgbouncer-"))
    folder.chmod(0o755)  # read by the user PgBouncer switches to when started as root
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{database} = host={host} port={port} dbname={database} user={user}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen_port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 8\nmax_client_conn = 200\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (folder / name).chmod(0o644)
    # PgBouncer refuses to run as root; the embedded server's own system user can reach its socket.
    as_user = ["-u", "pgserver" if _user_exists("pgserver") else "nobody"] if os.geteuid() == 0 else []
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [PGBOUNCER, *as_user, str(folder / "pgbouncer.ini")], stdout=output, stderr=subprocess.STDOUT
        )
        try:
            _wait_for_port(listen_port, process, output)
            yield f"postgresql://{user}@127.0.0.1:{listen_port}/{database}"
        finally:
            stop_process(process)
            shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _wait_for_port(port: int, process: subprocess.Popen[bytes], output: IO[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.seek(0)
            raise RuntimeError(f"pgbouncer exited: {output.read().decode(errors='replace')}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("pgbouncer did not listen within 10 s")


@pytest.fixture
def pgbouncer_url(database_url: str) -> Iterator[str]:
    with running_pgbouncer(database_url) as url:
        yield url


async def _next_event(base_url: str, ready: asyncio.Event) -> dict:
    """Subscribe over graphql-transport-ws and return the first event that arrives."""
    async with websockets.connect(
        base_url.replace("http", "ws", 1) + "/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
    ) as stream:
        await stream.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await stream.recv())["type"] == "connection_ack"
        await stream.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": "subscription { eventRecorded { id message } }"},
                }
            )
        )
        ready.set()
        message = json.loads(await asyncio.wait_for(stream.recv(), 20))
        assert message["type"] == "next", message
        return message["payload"]["data"]["eventRecorded"]


async def test_every_door_works_through_pgbouncer_in_transaction_mode(
    pgbouncer_url: str, database_url: str
) -> None:
    env = service_env(
        DATABASE_URL=pgbouncer_url, DATABASE_POOL_MODE="transaction", DATABASE_DIRECT_URL=database_url
    )
    with running_service(env, "--workers", "2") as (base_url, _process):
        async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
            ready = asyncio.Event()
            watching = asyncio.create_task(_next_event(base_url, ready))
            await asyncio.wait_for(ready.wait(), 20)
            await asyncio.sleep(0.5)  # the subscription is registered once `subscribe` is handled

            # Enough concurrent requests that server connections change hands between transactions.
            created = await asyncio.gather(
                *(
                    http.post(
                        "/api/events/",
                        json=valid_event(component="pooled", message=f"through the pooler {n}"),
                    )
                    for n in range(40)
                )
            )
            assert {response.status_code for response in created} == {201}
            live = await watching
            assert live["message"].startswith("through the pooler")

            # Idempotency: a batch's per-item keys and a single event's header, each retried.
            items = [
                {**valid_event(message=f"batched {n}"), IDEMPOTENCY_KEY_FIELD: f"item-{n}"} for n in range(3)
            ]
            batch = await http.post("/api/events/batch", json=items)
            again = await http.post("/api/events/batch", json=items)
            single = valid_event(message="keyed")
            first = await http.post("/api/events/", json=single, headers={"Idempotency-Key": "pooled"})
            retry = await http.post("/api/events/", json=single, headers={"Idempotency-Key": "pooled"})
            assert (first.status_code, retry.status_code) == (201, 200) and retry.json() == first.json()
            assert batch.status_code == 201 and again.status_code == 201
            assert again.json() == batch.json()

            listed = await asyncio.gather(
                *(http.get("/api/events/", params={"component": "pooled"}) for _ in range(20))
            )
            assert {len(response.json()["events"]) for response in listed} == {40}
            one = created[0].json()["id"]
            assert (await http.get(f"/api/events/{one}")).json()["id"] == one

            page = await http.post(
                "/graphql",
                json={"query": '{ events(filter: {messageContains: "pooler"}, first: 5) { totalCount } }'},
            )
            assert page.json() == {"data": {"events": {"totalCount": 40}}}
            recorded = await http.post(
                "/graphql",
                json={
                    "query": "mutation($e: RecordEventInput!) { recordEvent(input: $e) { message } }",
                    "variables": {"e": valid_event(message="by mutation")},
                },
            )
            assert recorded.json() == {"data": {"recordEvent": {"message": "by mutation"}}}

            exported = await http.get("/api/events/export", params={"component": "pooled"})
            assert exported.status_code == 200 and len(exported.text.splitlines()) == 40


def test_a_pooler_without_transaction_mode_is_one_line_saying_which_setting(pgbouncer_url: str) -> None:
    result = subprocess.run(
        [*_cli(), "migrate"],
        env=service_env(DATABASE_URL=pgbouncer_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "DATABASE_POOL_MODE=transaction" in result.stderr and "Traceback" not in result.stderr


def test_transaction_mode_needs_a_direct_url_for_listen_and_migrations(pgbouncer_url: str) -> None:
    result = subprocess.run(
        [*_cli(), "migrate"],
        env=service_env(DATABASE_URL=pgbouncer_url, DATABASE_POOL_MODE="transaction"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "DATABASE_DIRECT_URL" in result.stderr and "Traceback" not in result.stderr


def _cli() -> list[str]:
    return [sys.executable, "-m", "api.cli"]
