"""events(filter:): every filter alone, combined, and totalCount under a filter."""

from datetime import timedelta
from typing import Any

import httpx
import pytest

from db.engine import Database
from tests.graphql_schema.support import T0, event_row, graphql, graphql_data, only_error, seed

MESSAGES_QUERY = """
query ($filter: EventFilter) {
  events(filter: $filter, first: 500, orderBy: OLDEST_FIRST) { nodes { message } totalCount }
}
"""


async def messages(client: httpx.AsyncClient, event_filter: dict[str, Any]) -> list[str]:
    data = await graphql_data(client, MESSAGES_QUERY, {"filter": event_filter})
    connection = data["events"]
    assert connection["totalCount"] == len(connection["nodes"])
    return [node["message"] for node in connection["nodes"]]


@pytest.fixture
async def varied(database: Database) -> None:
    """Five events differing in every filterable way, one minute apart."""
    await seed(
        database,
        [
            event_row(
                message="User Logged in",
                component="auth",
                environment="prod",
                email="ann@example.com",
                data={"plan": "pro", "seats": 3},
                created_at=T0,
            ),
            event_row(
                message="order 100% paid",
                component="order",
                environment="prod",
                email="bob@example.com",
                data={"plan": "free"},
                created_at=T0 + timedelta(minutes=1),
            ),
            event_row(
                message="order_failed twice",
                component="order",
                environment="staging",
                email="ann@example.com",
                data={"plan": "pro", "tags": ["a", "b"]},
                created_at=T0 + timedelta(minutes=2),
            ),
            event_row(
                message="payment declined by bank",
                component="billing",
                environment="dev",
                email="cy@example.com",
                data={"nested": {"deep": True}},
                created_at=T0 + timedelta(minutes=3),
            ),
            event_row(
                message="no email here",
                component="auth",
                environment="dev",
                email=None,
                data={},
                created_at=T0 + timedelta(minutes=4),
            ),
        ],
    )


ALL = [
    "User Logged in",
    "order 100% paid",
    "order_failed twice",
    "payment declined by bank",
    "no email here",
]


@pytest.mark.parametrize(
    ("event_filter", "expected"),
    [
        ({}, ALL),
        ({"component": "order"}, ["order 100% paid", "order_failed twice"]),
        ({"component": "Order"}, []),
        ({"environment": "dev"}, ["payment declined by bank", "no email here"]),
        ({"email": "ann@example.com"}, ["User Logged in", "order_failed twice"]),
        ({"componentIn": ["auth", "billing"]}, [ALL[0], ALL[3], ALL[4]]),
        ({"componentIn": []}, []),
        ({"environmentIn": ["staging", "dev"]}, [ALL[2], ALL[3], ALL[4]]),
        ({"messageContains": "LOGGED"}, ["User Logged in"]),
        ({"messageContains": "%"}, ["order 100% paid"]),
        ({"messageContains": "_"}, ["order_failed twice"]),
        ({"search": "paid"}, ["order 100% paid"]),
        ({"search": "order"}, ["order 100% paid", "order_failed twice"]),
        ({"search": "payment -bank"}, []),
        ({"search": '"declined by"'}, ["payment declined by bank"]),
        ({"search": "declined OR logged"}, [ALL[0], ALL[3]]),
        ({"from": (T0 + timedelta(minutes=1)).isoformat()}, ALL[1:]),
        ({"to": (T0 + timedelta(minutes=1)).isoformat()}, ALL[:1]),
        ({"from": "2020-01-01T00:01:00", "to": "2020-01-01T00:03:00"}, ALL[1:3]),
        ({"dataContains": {"plan": "pro"}}, [ALL[0], ALL[2]]),
        ({"dataContains": {"tags": ["b"]}}, [ALL[2]]),
        ({"dataContains": {"nested": {"deep": True}}}, [ALL[3]]),
    ],
    ids=lambda value: str(value)[:60] if not isinstance(value, list) else "",
)
@pytest.mark.usefixtures("varied")
async def test_events_filter_alone_selects_only_matching_events(
    client: httpx.AsyncClient, event_filter: dict[str, Any], expected: list[str]
) -> None:
    assert await messages(client, event_filter) == expected


@pytest.mark.usefixtures("varied")
async def test_events_filters_combine_with_and(client: httpx.AsyncClient) -> None:
    assert await messages(client, {"email": "ann@example.com", "component": "order"}) == [ALL[2]]
    assert await messages(
        client,
        {
            "componentIn": ["order", "auth"],
            "environment": "prod",
            "dataContains": {"plan": "pro"},
            "from": T0.isoformat(),
            "to": (T0 + timedelta(minutes=10)).isoformat(),
        },
    ) == [ALL[0]]
    assert await messages(client, {"messageContains": "order", "search": "twice"}) == [ALL[2]]
    assert await messages(client, {"environment": "prod", "email": "cy@example.com"}) == []


@pytest.mark.usefixtures("varied")
async def test_total_count_counts_the_filter_not_the_page(client: httpx.AsyncClient) -> None:
    data = await graphql_data(
        client,
        '{ events(first: 1, filter: {componentIn: ["auth", "order"]}) { totalCount nodes { id } } }',
    )
    assert data["events"]["totalCount"] == 4
    assert len(data["events"]["nodes"]) == 1


@pytest.mark.usefixtures("varied")
async def test_data_contains_must_be_an_object(client: httpx.AsyncClient) -> None:
    body = await graphql(client, MESSAGES_QUERY, {"filter": {"dataContains": ["plan"]}})
    error = only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "filter.dataContains"}


async def test_a_nul_character_in_a_filter_is_bad_user_input_not_a_server_error(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql",
        json={
            "query": "query($f: EventFilter) { events(filter: $f) { nodes { id } } }",
            "variables": {"f": {"componentIn": ["ok", "a\u0000b"]}},
        },
    )
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "filter.componentIn"}
    assert "NUL" in error["message"]


async def test_data_contains_matches_integers_beyond_64_bits_exactly(
    client: httpx.AsyncClient, database: Database
) -> None:
    big = 2**70
    ids = await seed(database, [event_row(data={"n": big}), event_row(data={"n": big + 1})])
    query = "query($f: EventFilter) { events(filter: $f) { nodes { id } } }"
    data = await graphql_data(client, query, {"f": {"dataContains": {"n": big}}})
    assert [node["id"] for node in data["events"]["nodes"]] == [ids[0]]
