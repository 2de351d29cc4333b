"""Apollo Client's persisted queries link (npm `@apollo/client`) against the service.

The real client, installed at test time: against a live server it sends a query by hash over GET
(`useGETForHashedQueries`), gets PersistedQueryNotFound, sends the document over POST (which
registers it), then finds it by hash; the same for a mutation (always POST), and a document the link
sent over graphql-transport-ws is found by hash over HTTP. Against a trusted-only server it gets one
clear refusal and does not retry.
"""

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from api.settings import Settings
from tests.graphql_schema.test_persisted_documents import UNCACHED
from tests.graphql_schema.test_trusted_documents import TRUSTED, write_manifest
from tests.graphql_schema.test_websocket_protocol import serving
from tests.npm_packages import npm_install, run_node
from tests.support import app_sharing_services

pytestmark = pytest.mark.slow

APOLLO_PACKAGES = {"@apollo/client": "^4", "graphql": "^16", "rxjs": "^7", "graphql-ws": "^6", "ws": "^8"}

# argv: the service's base URL, a tag making the documents new to it, and "apq" or "trusted".
# Prints one JSON object: per step, the result and every HTTP exchange the link made.
APOLLO_SCRIPT = r"""
import { createHash } from "node:crypto";
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [base, tag, mode] = process.argv.slice(2);
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

const exchanges = [];
async function recordingFetch(url, init) {
  const response = await fetch(url, init);
  const body = await response.clone().json();
  const sent = init.method === "GET" ? Object.fromEntries(new URL(url).searchParams) : JSON.parse(init.body);
  exchanges.push({
    method: init.method,
    sentQuery: typeof sent.query === "string" && sent.query.length > 0,
    sentHash: JSON.stringify(sent.extensions ?? "").includes("sha256Hash"),
    status: response.status,
    cacheControl: response.headers.get("cache-control"),
    codes: (body.errors ?? []).map((error) => error.extensions?.code),
  });
  return response;
}

// A fresh client for every step, asking the network: each answer comes from the server.
const defaultOptions = { query: { fetchPolicy: "network-only" } };
const client = (link) => new ApolloClient({ link, cache: new InMemoryCache(), defaultOptions });
const persisted = () => createPersistedQueryLink({ sha256, useGETForHashedQueries: true });
const httpLink = () => new HttpLink({ uri: `${base}/graphql`, fetch: recordingFetch });
const overHttp = () => client(persisted().concat(httpLink()));

const QUERY = gql(`query Apq${tag} { events(first: 3) { nodes { id } } }`);
const RECORD = gql(
  `mutation Apq${tag}($input: RecordEventInput!) { recordEvent(input: $input) { component } }`
);
const OVER_WS = gql(`query ApqWs${tag} { events(first: 1) { nodes { id } } }`);
const input = { component: `apq-${tag}`, environment: "test", email: "a@b.co", message: "m", data: {} };

const output = {};
async function step(name, run) {
  const start = exchanges.length;
  let result;
  try {
    result = await run();
  } catch (error) {
    result = { error };
  }
  output[name] = {
    data: result.data ?? null,
    errorCodes: (result.error?.errors ?? []).map((error) => error.extensions?.code),
    exchanges: exchanges.slice(start),
  };
}

await step("miss", () => overHttp().query({ query: QUERY }));
if (mode === "apq") {
  await step("hit", () => overHttp().query({ query: QUERY }));
  await step("mutationMiss", () => overHttp().mutate({ mutation: RECORD, variables: { input } }));
  await step("mutationHit", () => overHttp().mutate({ mutation: RECORD, variables: { input } }));
  // Over graphql-transport-ws the link sends the hash with the document; the server checks and keeps it.
  const url = base.replace("http", "ws") + "/graphql";
  const socket = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0 });
  const overWebsocket = client(persisted().concat(new GraphQLWsLink(socket)));
  await step("overWebsocket", () => overWebsocket.query({ query: OVER_WS }));
  await socket.dispose();
  await step("hitAfterWebsocket", () => overHttp().query({ query: OVER_WS }));
}
console.log(JSON.stringify(output));
"""


def exchange(
    method: str, *, sent_query: bool, status: int = 200, codes: list[str] | None = None
) -> dict[str, Any]:
    """One HTTP exchange of the link, as the script reports it (every request carries the hash)."""
    return {
        "method": method,
        "sentQuery": sent_query,
        "sentHash": True,
        "status": status,
        "cacheControl": UNCACHED if codes == ["PERSISTED_QUERY_NOT_FOUND"] else None,
        "codes": codes or [],
    }


MISS = ["PERSISTED_QUERY_NOT_FOUND"]


def run_apollo(base_url: str, mode: str) -> dict[str, Any]:
    folder = npm_install(APOLLO_PACKAGES)
    return json.loads(run_node(folder, APOLLO_SCRIPT, [base_url, uuid.uuid4().hex[:8], mode]))


def test_apollo_clients_persisted_queries_link_misses_registers_then_hits(live_server: str) -> None:
    output = run_apollo(live_server, "apq")

    # A query: by hash over GET (useGETForHashedQueries), a miss, the document over POST, then a hit.
    assert output["miss"]["exchanges"] == [
        exchange("GET", sent_query=False, codes=MISS),
        exchange("POST", sent_query=True),
    ]
    assert output["miss"]["data"]["events"]["nodes"] == [] and output["miss"]["errorCodes"] == []
    assert output["hit"]["exchanges"] == [exchange("GET", sent_query=False)]
    assert output["hit"]["data"] == output["miss"]["data"]
    # A mutation: always POST, the same miss-register-hit.
    assert output["mutationMiss"]["exchanges"] == [
        exchange("POST", sent_query=False, codes=MISS),
        exchange("POST", sent_query=True),
    ]
    assert output["mutationHit"]["exchanges"] == [exchange("POST", sent_query=False)]
    for name in ("mutationMiss", "mutationHit"):
        assert output[name]["data"]["recordEvent"]["component"].startswith("apq-")
    # Registered over the websocket (hash and document in the subscribe payload), a hit over HTTP.
    assert output["overWebsocket"]["errorCodes"] == [] and output["overWebsocket"]["data"]["events"]
    assert output["hitAfterWebsocket"]["exchanges"] == [exchange("GET", sent_query=False)]
    assert output["hitAfterWebsocket"]["data"] == output["overWebsocket"]["data"]


async def test_apollo_clients_link_gets_a_clear_refusal_from_a_trusted_only_server(
    app: FastAPI, settings: Settings, tmp_path: Path
) -> None:
    trusted = settings.model_copy(update={"graphql_trusted_documents": write_manifest(tmp_path, TRUSTED)})
    async with serving(app_sharing_services(app, trusted)) as base_url:
        output = await asyncio.to_thread(run_apollo, base_url, "trusted")
    # Not on the list: refused at once, and the link does not retry with the document.
    refusal = exchange("GET", sent_query=False, status=403, codes=["PERSISTED_QUERY_NOT_ALLOWED"])
    assert output["miss"]["exchanges"] == [refusal]
    assert output["miss"]["data"] is None and output["miss"]["errorCodes"] == ["PERSISTED_QUERY_NOT_ALLOWED"]
