"""Guards against abusive queries, and errors that never leak SQL or internals."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from graphql import get_introspection_query

from api.settings import Settings
from db.api_keys import KeyVerifier
from db.engine import Database
from tests.graphql_schema.support import graphql, graphql_data, only_error
from tests.support import app_sharing_services

DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]
MAX_QUERY_DEPTH = DEFAULTS.graphql_max_depth
MAX_ALIASES = DEFAULTS.graphql_max_aliases
MAX_TOKENS = DEFAULTS.graphql_max_tokens


def nested_actor_query(levels: int) -> str:
    """events -> nodes -> actor -> events -> actor -> ... `levels` times: depth 3 + 2 * levels."""
    selection = "email"
    for _ in range(levels):
        selection = f"actor {{ events(first: 1) {{ {selection} }} }}"
    return f"{{ events(first: 1) {{ nodes {{ {selection} }} }} }}"


async def test_reasonably_nested_query_is_served(client: httpx.AsyncClient) -> None:
    query = "{ events { edges { node { actor { events { actor { email } } } } } } }"
    assert (await graphql_data(client, query))["events"]["edges"] == []


async def test_query_deeper_than_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    await graphql_data(client, nested_actor_query(3))  # depth 9
    body = await graphql(client, nested_actor_query(5))
    assert str(MAX_QUERY_DEPTH) in only_error(body)["message"]
    assert "exceeds maximum operation depth" in only_error(body)["message"]
    assert body.get("data") is None


async def test_too_many_aliases_are_refused(client: httpx.AsyncClient) -> None:
    allowed = " ".join(f"a{index}: events {{ totalCount }}" for index in range(MAX_ALIASES))
    await graphql_data(client, f"{{ {allowed} }}")
    too_many = " ".join(f'a{index}: actor(email: "x") {{ email }}' for index in range(MAX_ALIASES + 1))
    body = await graphql(client, f"{{ {too_many} }}")
    assert "aliases" in only_error(body)["message"]
    assert body.get("data") is None


async def test_query_with_too_many_tokens_is_refused(client: httpx.AsyncClient) -> None:
    # Each repetition is 4 tokens: `nodes { id }`; duplicates are legal and merged.
    padding = " ".join("nodes { id }" for _ in range(MAX_TOKENS // 4))
    body = await graphql(client, f"{{ events {{ {padding} }} }}")
    assert "token" in only_error(body)["message"].lower()
    assert body.get("data") is None


async def test_graphiql_introspection_fits_within_the_guards(client: httpx.AsyncClient) -> None:
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    data = await graphql_data(client, query)
    names = {type_["name"] for type_ in data["__schema"]["types"]}
    assert {"Event", "Actor", "EventConnection", "EventFilter", "RecordEventInput"} <= names


@pytest.fixture
async def app_without_events_table(
    app: FastAPI, settings: Settings, server_url: str
) -> AsyncIterator[FastAPI]:
    """The app wired to a real database that lacks the events table: every query fails in SQL."""
    database = await Database.connect(server_url, min_size=1, max_size=2)
    try:
        yield app_sharing_services(app, settings, database=database, key_verifier=KeyVerifier(database, 0))
    finally:
        await database.close()


async def test_unexpected_errors_are_masked_and_leak_no_sql(
    app_without_events_table: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    transport = httpx.ASGITransport(app=app_without_events_table)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/graphql", json={"query": '{ events(filter: {component: "x"}) { nodes { id } } }'}
        )
    body = response.json()
    error = only_error(body)
    assert error["message"] == "Internal server error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert error["path"] == ["events"]
    for secret in ("relation", "SELECT", "asyncpg", "Traceback", "does not exist"):
        assert secret not in response.text
    # The operator still gets the whole story in the log.
    assert any("does not exist" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


async def test_unreachable_database_is_service_unavailable(
    app: FastAPI, settings: Settings, server_url: str
) -> None:
    database = await Database.connect(server_url, min_size=1, max_size=1)
    await database.close()  # every acquire now fails as it would with the server gone
    application = app_sharing_services(
        app, settings, database=database, key_verifier=KeyVerifier(database, 0)
    )
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        body = await graphql(client, '{ actor(email: "a@example.com") { email } }')
    error = only_error(body)
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE"}
    assert "pool" not in error["message"]


async def test_the_guards_follow_the_settings(app: FastAPI, settings: Settings) -> None:
    strict = app_sharing_services(
        app, settings.model_copy(update={"graphql_max_depth": 5, "graphql_max_aliases": 1})
    )
    transport = httpx.ASGITransport(app=strict)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        deep = await graphql(client, nested_actor_query(2))
        aliased = await graphql(client, "{ a: events { totalCount } b: events { totalCount } }")
        shallow = await graphql(client, "{ events { totalCount } }")
    assert "5" in only_error(deep)["message"]
    assert "errors" in aliased
    assert "errors" not in shallow
