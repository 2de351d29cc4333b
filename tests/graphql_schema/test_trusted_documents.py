"""Trusted documents (GRAPHQL_TRUSTED_DOCUMENTS): only the documents of a manifest run.

Both manifest formats are read, every hash is checked at start-up (a wrong one stops it with one
clear line), each document is parsed and validated once then, and every other request is refused
before it is parsed, with no SQL, over HTTP and websockets; the trusted ones still pass the method
rules, the cost limit and authorization.
"""

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

import graphql_schema.schema
from api.app import create_app
from api.settings import Settings
from db.engine import Database
from graphql_schema.persisted_documents import ManifestError, read_manifest
from tests.graphql_schema.support import CountingPool
from tests.graphql_schema.test_persisted_documents import (
    EVENTS,
    GRAPHQL_RESPONSE_JSON,
    MEDIA_TYPES,
    NESTED,
    RECORD,
    ask,
    bearer,
    by_hash,
    client_for,
    data,
    guarded,
    refused,
    sha,
    ws_errors,
)
from tests.graphql_schema.test_subscription import LEGACY_WS, TRANSPORT_WS, GraphQLSocket
from tests.graphql_schema.test_websocket_protocol import send, serving, subscribe
from tests.support import ROOT, app_sharing_services, service_env, valid_event

TRUSTED = [EVENTS, NESTED, RECORD, "{ events(first: 1) { nodes { id } } }"]
NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"
APOLLO_FORMAT = "apollo-persisted-query-manifest"


def write_manifest(folder: Path, documents: list[str], *, apollo: bool = False) -> Path:
    """The manifest of `documents`: GraphQL Code Generator's flat object, or Apollo's format."""
    path = folder / ("manifest.json" if apollo else "persisted-documents.json")
    if apollo:
        operations = [
            {"id": sha(body), "body": body, "name": f"Op{i}", "type": "query"}
            for i, body in enumerate(documents)
        ]
        manifest: object = {"format": APOLLO_FORMAT, "version": 1, "operations": operations}
    else:
        manifest = {sha(body): body for body in documents}
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def trusted_settings(settings: Settings, tmp_path: Path) -> Settings:
    # model_copy skips validation: the schema reads and checks the manifest itself.
    return settings.model_copy(update={"graphql_trusted_documents": write_manifest(tmp_path, TRUSTED)})


@pytest.fixture
async def trusted_client(app: FastAPI, trusted_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app_sharing_services(app, trusted_settings)) as http:
        yield http


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every document parsed from now on (none should be)."""
    parsed: list[str] = []
    monkeypatch.setattr(graphql_schema.schema, "parse", lambda text, **_: parsed.append(text))
    return parsed


# The manifest, at start-up


def test_both_manifest_formats_are_read_and_every_hash_checked(tmp_path: Path) -> None:
    flat = read_manifest(write_manifest(tmp_path, TRUSTED))
    apollo = read_manifest(write_manifest(tmp_path, TRUSTED, apollo=True))
    assert flat == apollo == {sha(document): document for document in TRUSTED}


def apollo_manifest(*operations: object, version: int = 1) -> str:
    return json.dumps({"format": APOLLO_FORMAT, "version": version, "operations": list(operations)})


UNTRUSTWORTHY = {
    "missing": (None, "cannot read"),
    "not JSON": ("{not json", "is not a JSON file"),
    "an array": ("[]", "must hold a JSON object"),
    "empty": ("{}", "lists no documents"),
    "a wrong hash": (json.dumps({"ab" * 32: EVENTS}), "is not the SHA-256 of its document"),
    "SHA-1 keys": (json.dumps({hashlib.sha1(EVENTS.encode()).hexdigest(): EVENTS}), "hashAlgorithm 'sha256'"),
    "a document not a string": (json.dumps({sha(EVENTS): 5}), "must be a string"),
    "another Apollo version": (apollo_manifest(version=2), "unknown manifest format"),
    "a wrong Apollo id": (
        apollo_manifest({"id": "ab" * 32, "body": EVENTS, "name": "Events"}),
        f"operations[0] (Events): {'ab' * 32} is not the SHA-256",
    ),
    "an Apollo operation without body": (apollo_manifest({"id": sha(EVENTS)}), "string `body`"),
}


@pytest.mark.parametrize("case", list(UNTRUSTWORTHY))
def test_a_manifest_that_cannot_be_trusted_is_refused_with_a_clear_message(tmp_path: Path, case: str) -> None:
    content, problem = UNTRUSTWORTHY[case]
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, graphql_trusted_documents=path)  # type: ignore[call-arg]
    assert problem in str(raised.value) and str(path) in str(raised.value)
    with pytest.raises(ManifestError, match=re.escape(problem)):
        read_manifest(path)


@pytest.mark.slow  # starts a service process (the full run's job)
def test_the_service_refuses_to_start_with_a_wrong_hash_saying_why_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "persisted-documents.json"
    path.write_text(json.dumps({"ab" * 32: EVENTS}))
    completed = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", "1"],
        cwd=ROOT,
        env=service_env(GRAPHQL_TRUSTED_DOCUMENTS=str(path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("activity-service: invalid settings: GRAPHQL_TRUSTED_DOCUMENTS:"), line
    assert "is not the SHA-256 of its document" in line and str(path) in line


@pytest.mark.parametrize(
    ("document", "problem"), [("{ noSuchField }", "Cannot query field"), ("{", "Syntax Error")]
)
def test_a_trusted_document_that_is_not_valid_here_stops_start_up(
    settings: Settings, tmp_path: Path, document: str, problem: str
) -> None:
    invalid = settings.model_copy(
        update={"graphql_trusted_documents": write_manifest(tmp_path, [EVENTS, document])}
    )
    with pytest.raises(
        ManifestError, match=f"the trusted document {sha(document)} is not valid here: {problem}"
    ):
        create_app(invalid)


def test_trusted_documents_are_parsed_once_at_start_up(
    trusted_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    real_parse = graphql_schema.schema.parse
    monkeypatch.setattr(
        graphql_schema.schema, "parse", lambda text, **kw: parsed.append(text) or real_parse(text, **kw)
    )
    create_app(trusted_settings)
    assert sorted(parsed) == sorted(TRUSTED)


# Requests


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_trusted_document_runs_by_hash_by_text_and_by_both_without_being_parsed(
    trusted_client: httpx.AsyncClient, no_parsing: list[str], media_type: str, method: str
) -> None:
    for sent in ({"sha256": sha(EVENTS)}, {"query": EVENTS}, {"query": EVENTS, "sha256": sha(EVENTS)}):
        response = await ask(trusted_client, method=method, accept=media_type, variables={"first": 2}, **sent)
        assert data(response) == {"events": {"nodes": []}}
    assert no_parsing == []  # parsed at start-up, never again


UNTRUSTED = "{ events(first: 3) { nodes { id } } }"
REFUSED = {
    "a text not on the list": {"query": UNTRUSTED},
    "not even GraphQL (never parsed)": {"query": "{"},
    "introspection (so GraphiQL cannot load the schema)": {"query": "{ __schema { queryType { name } } }"},
    "an unknown hash": {"sha256": sha(UNTRUSTED)},
    "an APQ registration": {"query": UNTRUSTED, "sha256": sha(UNTRUSTED)},
}


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_anything_else_is_refused_before_it_is_parsed_with_no_sql(
    trusted_client: httpx.AsyncClient,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    no_parsing: list[str],
    media_type: str,
    method: str,
) -> None:
    counting = CountingPool(database.pool)
    monkeypatch.setattr(database, "pool", counting)
    status = 403 if media_type == GRAPHQL_RESPONSE_JSON else 200
    for name, sent in [
        *REFUSED.items(),
        ("the hash just sent with its document", {"sha256": sha(UNTRUSTED)}),
    ]:
        response = await ask(trusted_client, method=method, accept=media_type, **sent)
        assert (
            refused(response, status, NOT_ALLOWED, media_type)
            == "Only trusted documents may run on this server."
        ), name
    assert no_parsing == [] and counting.statements == [] and counting.acquisitions == 0


async def test_the_persisted_query_checks_that_come_first_still_hold(
    trusted_client: httpx.AsyncClient,
) -> None:
    response = await ask(trusted_client, UNTRUSTED, sha256=sha(EVENTS))
    assert refused(response, 400, "BAD_REQUEST") == "provided sha does not match query"
    response = await ask(trusted_client, extensions=by_hash(sha(EVENTS), version=2))
    assert refused(response, 400, "BAD_REQUEST") == "Unsupported persisted query version"


async def test_a_trusted_mutation_is_still_refused_over_get(
    trusted_client: httpx.AsyncClient, database: Database
) -> None:
    variables = {"input": valid_event()}
    refused(
        await ask(trusted_client, sha256=sha(RECORD), method="GET", variables=variables),
        405,
        "OPERATION_NOT_SUPPORTED",
    )
    assert data(await ask(trusted_client, sha256=sha(RECORD), variables=variables))
    async with database.transaction() as connection:
        assert await connection.fetchval("SELECT count(*) FROM events") == 1


async def test_a_trusted_document_passes_the_cost_limit_and_authorization(
    app: FastAPI, trusted_settings: Settings, keys: dict[str, str]
) -> None:
    first = {"first": 1}
    async with client_for(guarded(app, trusted_settings)) as http:
        refused(await ask(http, sha256=sha(EVENTS), variables=first), 200, "UNAUTHENTICATED")
        refused(
            await ask(http, sha256=sha(EVENTS), variables=first, headers=bearer(keys["write"])),
            200,
            "FORBIDDEN",
        )
        reader = bearer(keys["read"])
        recording = {"input": valid_event()}
        refused(await ask(http, sha256=sha(RECORD), variables=recording, headers=reader), 200, "FORBIDDEN")
        costly = {"first": 500}
        refused(
            await ask(http, sha256=sha(NESTED), variables=costly, headers=reader), 200, "QUERY_TOO_COMPLEX"
        )
        assert data(await ask(http, sha256=sha(EVENTS), variables=first, headers=reader))


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_over_websockets_only_trusted_documents_run(
    app: FastAPI, trusted_settings: Settings, protocol: str
) -> None:
    async with (
        serving(app_sharing_services(app, trusted_settings)) as base_url,
        GraphQLSocket.open(base_url, protocol) as socket,
    ):
        await send(socket, subscribe("text", {"query": "{ __typename }"}, protocol))
        untrusted = await socket._receive()
        named = {"variables": {"first": 1}, "extensions": by_hash(sha(EVENTS))}
        await send(socket, subscribe("hash", named, protocol))
        trusted = await socket._receive()
    assert [error["extensions"]["code"] for error in ws_errors(untrusted, protocol)] == [NOT_ALLOWED]
    assert trusted["id"] == "hash" and trusted["payload"] == {"data": {"events": {"nodes": []}}}
