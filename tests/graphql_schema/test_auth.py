"""API keys on the GraphQL door: reads need events:read, writes events:write; the schema stays open."""

import httpx
import pytest

READ = "events:read"
WRITE = "events:write"
RECORD = """mutation { recordEvent(input: {component: "c", environment: "e", email: "a@b.co",
  message: "m", data: {}}) { id } }"""
RECORD_MANY = """mutation { recordEvents(inputs: [{component: "c", environment: "e", email: "a@b.co",
  message: "m", data: {}}]) { id } }"""
OPERATIONS = {
    "events": ("{ events(first: 1) { nodes { id } } }", READ),
    "event": ('{ event(id: "a785b2db-6566-4316-a435-58f8e5c6ae98") { id } }', READ),
    "actor": ('{ actor(email: "a@b.co") { eventCount } }', READ),
    "recordEvent": (RECORD, WRITE),
    "recordEvents": (RECORD_MANY, WRITE),
}
GRANTS = {"read": {READ}, "write": {WRITE}, "admin": {READ, WRITE}}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("caller", ["none", "revoked", "read", "write", "admin"])
async def test_operations_need_a_key_with_the_right_scope(
    auth_client: httpx.AsyncClient, keys: dict[str, str], operation: str, caller: str
) -> None:
    query, scope = OPERATIONS[operation]
    headers = {} if caller == "none" else {"Authorization": f"Bearer {keys[caller]}"}
    body = (await auth_client.post("/graphql", json={"query": query}, headers=headers)).json()
    if caller in ("none", "revoked"):
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    elif scope not in GRANTS[caller]:
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert scope in body["errors"][0]["message"]
    else:
        assert "errors" not in body, body
        assert body["data"][operation] is not None or operation in ("event", "actor")


async def test_a_refused_mutation_writes_nothing(
    auth_client: httpx.AsyncClient, client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    headers = {"X-API-Key": keys["read"]}
    body = (await auth_client.post("/graphql", json={"query": RECORD}, headers=headers)).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await client.get("/api/events/")).json() == {"events": []}


async def test_introspection_and_the_graphiql_page_need_no_key(auth_client: httpx.AsyncClient) -> None:
    body = (await auth_client.post("/graphql", json={"query": "{ __schema { queryType { name } } }"})).json()
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    page = await auth_client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
