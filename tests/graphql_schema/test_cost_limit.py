"""The cost limit: what a response can hold is computed from the document and its variables, and a
request over the limit is refused before any SQL runs."""

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from api.settings import Settings
from db.engine import Database
from tests.graphql_schema.support import CountingPool, graphql, graphql_data, only_error
from tests.graphql_schema.test_subscription import TRANSPORT_WS
from tests.support import running_service, service_env

DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]
MAX_NODES = DEFAULTS.graphql_max_nodes
PAGE = DEFAULTS.max_page_size
DATA_NODES = DEFAULTS.max_data_bytes // 1024  # `data` counts one node per KiB of its limit
MESSAGE_NODES = DEFAULTS.max_message_length // 1024

# The amplification attacks: nested connections multiplying their pages, and aliases
# repeating the largest page with the largest field.
NESTED = (
    '{ events(first: 500, filter: {email: "a@example.com"}) '
    "{ nodes { actor { events(first: 500) { id message } } } } }"
)
ALIASED_DATA = (
    "{ " + " ".join(f"a{index}: events(first: 500) {{ nodes {{ data }} }}" for index in range(4)) + " }"
)
DASHBOARD = (
    "{ events(first: 50) { edges { cursor node { id component environment email message data createdAt "
    "actor { email eventCount lastSeenAt } } } pageInfo { hasNextPage endCursor } totalCount } }"
)


def too_complex(body: dict[str, Any]) -> dict[str, Any]:
    """The refusal's extensions, checking it is the cost limit's and that nothing was answered."""
    error = only_error(body)
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", body
    assert body.get("data") is None
    return error["extensions"]


async def test_nested_pages_multiply_and_are_refused_before_any_sql(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingPool(database.pool)
    monkeypatch.setattr(database, "pool", counting)
    extensions = too_complex(await graphql(client, NESTED))
    monkeypatch.undo()
    # connection + 500 nodes + 500 actors + 500 x 500 events, each with a message.
    assert extensions["cost"] == 1 + 500 + 500 + 500 * 500 * (1 + MESSAGE_NODES)
    assert extensions["maxCost"] == MAX_NODES
    assert counting.statements == []


async def test_large_fields_weigh_by_their_size_limit(client: httpx.AsyncClient) -> None:
    extensions = too_complex(await graphql(client, ALIASED_DATA))
    assert extensions["cost"] == 4 * (1 + PAGE + PAGE * DATA_NODES)


async def test_one_full_page_of_the_largest_events_is_served(client: httpx.AsyncClient) -> None:
    query = "{ events(first: 500) { nodes { id message data actor { email } } } }"
    assert (await graphql_data(client, query))["events"]["nodes"] == []


async def test_a_dashboard_page_is_far_below_the_limit(client: httpx.AsyncClient) -> None:
    data = await graphql_data(client, DASHBOARD)
    assert data["events"]["totalCount"] == 0


async def test_the_cost_follows_variables_and_skipped_fields(client: httpx.AsyncClient) -> None:
    query = """query($size: Int!, $skipData: Boolean!) {
      a: events(first: $size) { nodes { data @skip(if: $skipData) } }
      b: events(first: $size) { nodes { ...Big } }
    }
    fragment Big on Event { data message }"""
    refused = too_complex(await graphql(client, query, {"size": 500, "skipData": False}))
    assert refused["cost"] == 2 * (1 + PAGE) + PAGE * DATA_NODES + PAGE * (DATA_NODES + MESSAGE_NODES)
    await graphql_data(client, query, {"size": 500, "skipData": True})
    await graphql_data(client, query, {"size": 100, "skipData": False})


async def test_an_oversized_page_is_still_a_page_size_error(client: httpx.AsyncClient) -> None:
    body = await graphql(client, "{ events(first: 100000) { nodes { id } } }")
    assert only_error(body)["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_full_batch_echoed_back_is_served(client: httpx.AsyncClient) -> None:
    """A write's own events only echo the request (bounded by the body limit): their text counts nothing."""
    one = {"component": "c", "environment": "e", "email": "a@b.co", "message": "m", "data": {}}
    query = "mutation($inputs: [RecordEventInput!]!) { recordEvents(inputs: $inputs) { id message data } }"
    inputs = [one] * DEFAULTS.max_batch_events
    data = await graphql_data(client, query, {"inputs": inputs})
    assert len(data["recordEvents"]) == DEFAULTS.max_batch_events
    # What is reachable from them is not the request's echo: it is costed in full.
    nested = (
        "mutation($inputs: [RecordEventInput!]!) "
        "{ recordEvents(inputs: $inputs) { actor { events(first: 100) { data } } } }"
    )
    assert too_complex(await graphql(client, nested, {"inputs": inputs[:10]}))[
        "cost"
    ] == 10 + 10 + 10 * 100 * (1 + DATA_NODES)


@pytest.fixture(scope="module")
def small_limit_service(database_url: str) -> Iterator[str]:
    env = service_env(DATABASE_URL=database_url, GRAPHQL_MAX_NODES="100", GRAPHQL_MAX_SUBSCRIPTION_NODES="10")
    with running_service(env) as (base_url, _process):
        yield base_url


@pytest.mark.slow
async def test_the_limits_are_settings(small_limit_service: str) -> None:
    async with httpx.AsyncClient(base_url=small_limit_service, timeout=15) as http:
        body = (await http.post("/graphql", json={"query": "{ events(first: 100) { nodes { id } } }"})).json()
        assert too_complex(body)["maxCost"] == 100
        query = "{ events(first: 98) { nodes { id } } }"
        served = (await http.post("/graphql", json={"query": query})).json()
        assert "errors" not in served, served


async def test_health_stays_fast_while_amplification_attacks_are_refused(live_server: str) -> None:
    """Each attack is refused at once, and the service keeps answering its health check meanwhile."""
    attacks = [NESTED, ALIASED_DATA] * 10
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:

        async def attack(query: str) -> float:
            started = time.perf_counter()
            body = (await http.post("/graphql", json={"query": query})).json()
            too_complex(body)
            return time.perf_counter() - started

        async def health() -> float:
            started = time.perf_counter()
            assert (await http.get("/api/health")).status_code == 200
            return time.perf_counter() - started

        results = await asyncio.gather(*(attack(query) for query in attacks), health(), health())
    # Before the limit, one such request took 10 s and stalled health for as long. Generous bounds:
    # this machine is shared, and what matters is seconds against milliseconds.
    assert max(results[: len(attacks)]) < 2.0, results
    assert max(results[len(attacks) :]) < 2.0, results


async def test_a_subscription_is_costed_per_delivered_event_against_its_own_limit(live_server: str) -> None:
    """1,000 subscribers each re-reading 500 events per recorded event was the issue's attack."""
    url = live_server.replace("http://", "ws://", 1) + "/graphql"
    greedy = "subscription { eventRecorded { actor { events(first: 500) { id } } } }"
    async with connect(url, subprotocols=[TRANSPORT_WS]) as websocket:  # type: ignore[list-item]
        await websocket.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await websocket.recv())["type"] == "connection_ack"
        await websocket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": greedy}}))
        refusal = json.loads(await asyncio.wait_for(websocket.recv(), 15))
    assert refusal["type"] == "error", refusal
    [error] = refusal["payload"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["cost"] == 1 + 1 + 500
    assert error["extensions"]["maxCost"] == DEFAULTS.graphql_max_subscription_nodes
