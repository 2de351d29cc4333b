"""Automatic persisted queries, as Apollo's clients send them, over HTTP POST, GET and websockets.

A document named by hash (`extensions.persistedQuery`) gets Apollo Server's answers, is registered
only by a request the gate admits, passes every step of the gate (cost, authorization) as a text
does, and on a hit is neither hashed nor parsed again. Trusted documents are in
test_trusted_documents.py, Apollo Client's own link in test_apollo_persisted_queries.py.
"""

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import graphql_schema.gate
import graphql_schema.schema
from api.settings import Settings
from db.api_keys import KeyVerifier
from db.engine import Database
from graphql_schema.persisted_documents import PersistedQueryStore
from tests.graphql_schema.support import CountingPool
from tests.graphql_schema.test_subscription import (
    LEGACY_WS,
    SUBSCRIPTION,
    TRANSPORT_WS,
    GraphQLSocket,
    wait_until_subscribed,
)
from tests.graphql_schema.test_websocket_protocol import send, serving, subscribe
from tests.support import ROOT, app_sharing_services, valid_event

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"
MEDIA_TYPES = [APPLICATION_JSON, GRAPHQL_RESPONSE_JSON]
UNCACHED = "private, no-cache, must-revalidate"
NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]

EVENTS = "query Events($first: Int!) { events(first: $first) { nodes { id message } } }"
NESTED = (
    "query Nested($first: Int!) { events(first: $first) { nodes { actor { events(first: 500) { id } } } } }"
)
COSTLY = "{ events(first: 500) { nodes { actor { events(first: 500) { id } } } } }"
RECORD = "mutation Record($input: RecordEventInput!) { recordEvent(input: $input) { id } }"
TYPENAME = {"__typename": "Query"}


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def by_hash(sha256: object, version: object = 1) -> dict[str, Any]:
    """`extensions` naming a document by hash, as Apollo's link sends them."""
    return {"persistedQuery": {"version": version, "sha256Hash": sha256}}


def fresh_query() -> str:
    """A query no test has sent before (stores and caches outlive one test)."""
    return f"query Fresh{uuid.uuid4().hex[:10]} {{ __typename }}"


async def ask(
    client: httpx.AsyncClient,
    query: str | None = None,
    *,
    sha256: object = None,
    method: str = "POST",
    accept: str = APPLICATION_JSON,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    """One request to /graphql: `query` as text and/or named by `sha256`, with other `fields`.

    Over GET, `variables` and `extensions` are JSON-encoded in the query string, as Apollo's link
    sends them with `useGETForHashedQueries`.
    """
    body = dict(fields)
    if query is not None:
        body["query"] = query
    if sha256 is not None:
        body["extensions"] = by_hash(sha256)
    headers = {"Accept": accept, **(headers or {})}
    if method == "POST":
        return await client.post("/graphql", json=body, headers=headers)
    params = {name: json.dumps(value) if isinstance(value, dict) else value for name, value in body.items()}
    return await client.get("/graphql", params=params, headers=headers)


def refused(response: httpx.Response, status: int, code: str, media_type: str = APPLICATION_JSON) -> str:
    """The message of the single error of a refusal, after checking status, media type and no `data`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(media_type), response.headers
    body = response.json()
    assert "data" not in body, body
    assert [error["extensions"]["code"] for error in body["errors"]] == [code], body
    return body["errors"][0]["message"]


def data(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def ws_errors(message: dict[str, Any], protocol: str) -> list[dict[str, Any]]:
    """The errors of an `error` message (one object in the legacy protocol, a list in the other)."""
    assert message["type"] == "error", message
    return message["payload"] if protocol == TRANSPORT_WS else [message["payload"]]


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def guarded(app: FastAPI, settings: Settings) -> FastAPI:
    """`settings` with API keys required (no key cache, so every request asks the database)."""
    verifier = KeyVerifier(app.state.database, cache_s=0)
    return app_sharing_services(
        app, settings.model_copy(update={"auth_required": True}), key_verifier=verifier
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def apq_app(app: FastAPI, settings: Settings) -> FastAPI:
    """An app of its own (so an empty APQ store) on the session's services."""
    return app_sharing_services(app, settings)


@pytest.fixture
async def apq_client(apq_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(apq_app) as http:
        yield http


# Over HTTP


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_an_unknown_hash_alone_is_persisted_query_not_found_200_uncached(
    apq_client: httpx.AsyncClient, media_type: str, method: str
) -> None:
    response = await ask(apq_client, sha256=sha(fresh_query()), method=method, accept=media_type)
    # 200 whatever the media type, as Apollo Server answers: its link retries on this message.
    assert refused(response, 200, NOT_FOUND, media_type) == "PersistedQueryNotFound"
    assert response.headers["cache-control"] == UNCACHED


@pytest.mark.parametrize("accept", ["*/*", "text/html"])
async def test_a_get_by_hash_is_a_graphql_request_not_the_graphiql_page(
    apq_client: httpx.AsyncClient, accept: str
) -> None:
    # Strawberry would answer GraphiQL to a GET without `query` (curl sends */*).
    response = await ask(apq_client, sha256=sha(fresh_query()), method="GET", accept=accept)
    refused(response, 200, NOT_FOUND)


async def test_a_hash_with_its_query_runs_and_registers_then_the_hash_alone_runs_by_post_and_get(
    apq_client: httpx.AsyncClient,
) -> None:
    query = fresh_query()
    refused(await ask(apq_client, sha256=sha(query)), 200, NOT_FOUND)
    assert data(await ask(apq_client, query, sha256=sha(query))) == TYPENAME
    assert data(await ask(apq_client, sha256=sha(query))) == TYPENAME
    hit = await ask(apq_client, sha256=sha(query), method="GET")
    assert data(hit) == TYPENAME
    assert "cache-control" not in hit.headers  # a hit is an ordinary answer


async def test_a_query_registered_over_get_is_found_over_post(apq_client: httpx.AsyncClient) -> None:
    query = fresh_query()
    assert data(await ask(apq_client, query, sha256=sha(query), method="GET")) == TYPENAME
    assert data(await ask(apq_client, sha256=sha(query))) == TYPENAME


async def test_variables_and_operation_name_apply_to_a_document_named_by_hash(
    apq_client: httpx.AsyncClient,
) -> None:
    two = "query A { a: __typename } query B { b: __typename }"
    assert data(await ask(apq_client, two, sha256=sha(two), operationName="B")) == {"b": "Query"}
    assert data(await ask(apq_client, sha256=sha(two), operationName="A")) == {"a": "Query"}
    assert data(await ask(apq_client, EVENTS, sha256=sha(EVENTS), variables={"first": 1}))
    refused(await ask(apq_client, sha256=sha(EVENTS), variables={"first": "many"}), 200, "BAD_USER_INPUT")


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_a_hash_that_is_not_its_querys_sha256_is_a_400_and_registers_nothing(
    apq_client: httpx.AsyncClient, media_type: str
) -> None:
    query = fresh_query()
    for wrong in (sha(fresh_query()), sha(query).upper(), "ab" * 32):
        response = await ask(apq_client, query, sha256=wrong, accept=media_type)
        assert refused(response, 400, "BAD_REQUEST", media_type) == "provided sha does not match query"
        # Registered under neither hash: a hash cannot be hijacked by another document.
        refused(await ask(apq_client, sha256=wrong), 200, NOT_FOUND)
    refused(await ask(apq_client, sha256=sha(query)), 200, NOT_FOUND)


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("version", [2, 0, "1", True, None, 1.5])
async def test_a_version_other_than_1_is_a_400(
    apq_client: httpx.AsyncClient, version: object, media_type: str
) -> None:
    query = fresh_query()
    for sent in ({}, {"query": query}):
        response = await ask(apq_client, extensions=by_hash(sha(query), version), accept=media_type, **sent)
        assert refused(response, 400, "BAD_REQUEST", media_type) == "Unsupported persisted query version"


@pytest.mark.parametrize("sha256", [5, ["ab"], {"hex": "ab"}])
async def test_a_hash_that_is_not_a_string_is_a_400(apq_client: httpx.AsyncClient, sha256: object) -> None:
    assert "sha256Hash" in refused(await ask(apq_client, sha256=sha256), 400, "BAD_REQUEST")


async def test_a_mutation_never_registers_or_runs_over_get(
    apq_client: httpx.AsyncClient, database: Database
) -> None:
    mutation = RECORD.replace("Record(", f"Record{uuid.uuid4().hex[:8]}(")
    variables = {"input": valid_event()}
    response = await ask(apq_client, mutation, sha256=sha(mutation), method="GET", variables=variables)
    refused(response, 405, "OPERATION_NOT_SUPPORTED")
    assert response.headers["allow"] == "POST"
    refused(await ask(apq_client, sha256=sha(mutation), variables=variables), 200, NOT_FOUND)
    # Registered over POST, it is still refused by hash over GET: the method rules hold.
    assert data(await ask(apq_client, mutation, sha256=sha(mutation), variables=variables))
    response = await ask(apq_client, sha256=sha(mutation), method="GET", variables=variables)
    refused(response, 405, "OPERATION_NOT_SUPPORTED")
    assert data(await ask(apq_client, sha256=sha(mutation), variables=variables))
    async with database.transaction() as connection:
        assert await connection.fetchval("SELECT count(*) FROM events") == 2  # the POSTs alone


@pytest.mark.parametrize(
    "document", ["{ noSuchField }", "{", "subscription { eventRecorded { id } }", COSTLY]
)
async def test_a_document_the_gate_refuses_is_not_registered(
    apq_client: httpx.AsyncClient, document: str
) -> None:
    assert (await ask(apq_client, document, sha256=sha(document))).json()["errors"]
    refused(await ask(apq_client, sha256=sha(document)), 200, NOT_FOUND)


async def test_a_document_named_by_hash_is_costed_with_each_requests_variables_before_any_sql(
    apq_client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert data(await ask(apq_client, NESTED, sha256=sha(NESTED), variables={"first": 1}))
    counting = CountingPool(database.pool)
    monkeypatch.setattr(database, "pool", counting)
    response = await ask(apq_client, sha256=sha(NESTED), variables={"first": 500})
    monkeypatch.undo()
    refused(response, 200, "QUERY_TOO_COMPLEX")
    assert counting.statements == []


async def test_a_document_named_by_hash_needs_the_same_key_as_its_text(
    app: FastAPI, settings: Settings, keys: dict[str, str]
) -> None:
    query = "{ events(first: 1) { nodes { id } } }"
    async with client_for(guarded(app, settings)) as http:
        # Registered by a reader; the hash alone then gives nothing to a caller the text would not.
        assert data(await ask(http, query, sha256=sha(query), headers=bearer(keys["read"])))
        refused(await ask(http, sha256=sha(query)), 200, "UNAUTHENTICATED")
        refused(await ask(http, sha256=sha(query), headers=bearer(keys["revoked"])), 200, "UNAUTHENTICATED")
        refused(await ask(http, sha256=sha(query), headers=bearer(keys["write"])), 200, "FORBIDDEN")
        assert data(await ask(http, sha256=sha(query), headers=bearer(keys["admin"])))
        # Nor does a refused caller register anything.
        other = "{ events(first: 2) { nodes { id } } }"
        refused(await ask(http, other, sha256=sha(other)), 200, "UNAUTHENTICATED")
        refused(await ask(http, sha256=sha(other), headers=bearer(keys["admin"])), 200, NOT_FOUND)


async def test_a_hit_is_neither_hashed_nor_parsed_again(
    apq_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []
    parsed: list[str] = []
    real_hash, real_parse = graphql_schema.gate.sha256_hex, graphql_schema.schema.parse
    monkeypatch.setattr(
        graphql_schema.gate, "sha256_hex", lambda text: hashed.append(text) or real_hash(text)
    )
    monkeypatch.setattr(
        graphql_schema.schema, "parse", lambda text, **kw: parsed.append(text) or real_parse(text, **kw)
    )
    query = fresh_query()
    assert data(await ask(apq_client, query, sha256=sha(query)))
    assert (hashed, parsed) == ([query], [query])
    for method in ("POST", "GET", "POST"):
        assert data(await ask(apq_client, sha256=sha(query), method=method)) == TYPENAME
    assert (hashed, parsed) == ([query], [query])


def test_the_store_drops_the_least_recently_used_beyond_its_byte_budget() -> None:
    store = PersistedQueryStore(max_bytes=30)
    for name in "abc":
        store.remember(name, name * 10)
    assert (len(store), store.bytes) == (3, 30)
    assert store.get("a") == "a" * 10  # now the most recently used
    store.remember("d", "d" * 10)
    assert store.get("b") is None and store.get("a") and store.get("c") and store.get("d")
    store.remember("huge", "h" * 31)  # larger than the whole budget: not kept, nothing dropped
    assert store.get("huge") is None and len(store) == 3
    store.remember("é", "é" * 10)  # counted in UTF-8 bytes (20), so two go
    assert (len(store), store.bytes) == (2, 30)


async def test_the_store_budget_is_a_setting(app: FastAPI, settings: Settings) -> None:
    first, second = "query First { __typename }", "query Second { __typename }"
    small = settings.model_copy(update={"graphql_apq_cache_bytes": len(first) + 5})
    async with client_for(app_sharing_services(app, small)) as http:
        for query in (first, second):
            assert data(await ask(http, query, sha256=sha(query)))
        refused(await ask(http, sha256=sha(first)), 200, NOT_FOUND)
        assert data(await ask(http, sha256=sha(second))) == TYPENAME


async def test_with_apq_off_a_persisted_query_is_not_supported(app: FastAPI, settings: Settings) -> None:
    query = fresh_query()
    off = settings.model_copy(update={"graphql_apq_cache_bytes": 0})
    async with client_for(app_sharing_services(app, off)) as http:
        for sent in (None, query):
            response = await ask(http, sent, sha256=sha(query), accept=GRAPHQL_RESPONSE_JSON)
            message = refused(response, 200, "PERSISTED_QUERY_NOT_SUPPORTED", GRAPHQL_RESPONSE_JSON)
            assert message == "PersistedQueryNotSupported"
            assert response.headers["cache-control"] == UNCACHED
        assert data(await ask(http, query)) == TYPENAME  # documents sent as text are unaffected


# Over websockets


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_over_websockets_a_miss_then_a_registration_then_a_hit(
    apq_app: FastAPI, apq_client: httpx.AsyncClient, protocol: str
) -> None:
    query = fresh_query()
    extensions = by_hash(sha(query))
    async with serving(apq_app) as base_url, GraphQLSocket.open(base_url, protocol) as socket:
        await send(socket, subscribe("miss", {"extensions": extensions}, protocol))
        miss = await socket._receive()
        await send(
            socket, subscribe("wrong", {"query": query, "extensions": by_hash(sha(fresh_query()))}, protocol)
        )
        wrong = await socket._receive()
        await send(socket, subscribe("register", {"query": query, "extensions": extensions}, protocol))
        registered = [await socket._receive(), await socket._receive()]
        await send(socket, subscribe("hit", {"extensions": extensions}, protocol))
        hit = await socket._receive()
    assert miss["id"] == "miss"
    assert ws_errors(miss, protocol) == [
        {"message": "PersistedQueryNotFound", "extensions": {"code": NOT_FOUND}}
    ]
    assert [error["message"] for error in ws_errors(wrong, protocol)] == ["provided sha does not match query"]
    assert registered[0]["payload"] == {"data": TYPENAME} and registered[1]["type"] == "complete"
    assert hit["id"] == "hit" and hit["payload"] == {"data": TYPENAME}
    # One store per process, whatever the transport: the socket's registration serves HTTP.
    assert data(await ask(apq_client, sha256=sha(query))) == TYPENAME


async def test_a_subscription_named_by_hash_streams_events(
    apq_app: FastAPI, apq_client: httpx.AsyncClient
) -> None:
    component = f"apq-{uuid.uuid4().hex[:8]}"
    probe = valid_event(component=component, message="a probe")
    named = {"variables": {"filter": {"component": component}}, "extensions": by_hash(sha(SUBSCRIPTION))}
    # HTTP serves no subscription, so it registers none.
    refused(await ask(apq_client, SUBSCRIPTION, sha256=sha(SUBSCRIPTION)), 200, "OPERATION_NOT_SUPPORTED")
    async with serving(apq_app) as base_url, httpx.AsyncClient() as http:
        async with GraphQLSocket.open(base_url, TRANSPORT_WS) as socket:
            await send(socket, subscribe("1", named))
            assert ws_errors(await socket._receive(), TRANSPORT_WS)[0]["extensions"]["code"] == NOT_FOUND
            await send(socket, subscribe("1", {**named, "query": SUBSCRIPTION}))
            await wait_until_subscribed(http, base_url, [socket], probe)
        async with GraphQLSocket.open(base_url, TRANSPORT_WS) as socket:
            await send(socket, subscribe("2", named))
            await wait_until_subscribed(http, base_url, [socket], probe)


# Documentation


def test_the_readme_and_env_sample_state_the_settings_defaults() -> None:
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `GRAPHQL_APQ_CACHE_BYTES`"))
    assert f"| {DEFAULTS.graphql_apq_cache_bytes} |" in row
    assert "| `GRAPHQL_TRUSTED_DOCUMENTS` | unset |" in readme
    sample = (ROOT / ".env.sample").read_text()
    assert f"\nGRAPHQL_APQ_CACHE_BYTES={DEFAULTS.graphql_apq_cache_bytes}\n" in sample


@pytest.mark.skipif(os.name != "posix", reason="runs the README's shell example")
def test_the_readme_example_runs_as_written(live_server: str) -> None:
    section = (ROOT / "README.md").read_text().split("### Persisted and trusted documents", 1)[1]
    script = section.split("```sh\n", 1)[1].split("```", 1)[0]
    script = script.replace("localhost:5000", live_server.removeprefix("http://"))
    # The README's query, made one the shared server has not seen yet.
    script = script.replace("{ events(first: 5)", f"{{ _{uuid.uuid4().hex[:8]}: events(first: 5)")
    completed = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    answers = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    assert len(answers) == 3, completed.stdout
    assert answers[0] == {
        "errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": NOT_FOUND}}]
    }
    assert answers[1] == answers[2] and "errors" not in answers[1]
    [events] = answers[1]["data"].values()
    assert isinstance(events["nodes"], list)
