"""event(id), actor(email), Event.actor, Actor.events, and how few SQL statements they cost."""

from datetime import timedelta

import httpx
import pytest

from db.engine import Database
from tests.graphql_schema.support import (
    T0,
    CountingPool,
    event_row,
    graphql,
    graphql_data,
    new_id,
    only_error,
    seed,
)

EVENT_QUERY = "query ($id: ID!) { event(id: $id) { id message data createdAt email } }"
ACTOR_QUERY = """
query ($email: String!, $first: Int!) {
  actor(email: $email) { email eventCount firstSeenAt lastSeenAt events(first: $first) { message } }
}
"""


async def test_event_by_id_returns_it(client: httpx.AsyncClient, database: Database) -> None:
    [event_id] = await seed(database, [event_row(data={"k": [1, "two"]}, message="hello")])
    event = (await graphql_data(client, EVENT_QUERY, {"id": event_id}))["event"]
    assert event == {
        "id": event_id,
        "message": "hello",
        "data": {"k": [1, "two"]},
        "createdAt": T0.isoformat(),
        "email": "ade@example.com",
    }


async def test_event_by_unknown_id_is_null(client: httpx.AsyncClient) -> None:
    assert (await graphql_data(client, EVENT_QUERY, {"id": new_id()}))["event"] is None


async def test_event_by_id_that_is_not_a_uuid_is_bad_user_input(client: httpx.AsyncClient) -> None:
    error = only_error(await graphql(client, EVENT_QUERY, {"id": "42"}))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"}


async def test_actor_summarises_an_email_and_lists_its_newest_events(
    client: httpx.AsyncClient, database: Database
) -> None:
    await seed(
        database,
        [
            event_row(
                email="ann@example.com", message=f"ann {index}", created_at=T0 + timedelta(minutes=index)
            )
            for index in range(4)
        ]
        + [event_row(email="bob@example.com", message="bob")],
    )
    actor = (await graphql_data(client, ACTOR_QUERY, {"email": "ann@example.com", "first": 2}))["actor"]
    assert actor == {
        "email": "ann@example.com",
        "eventCount": 4,
        "firstSeenAt": T0.isoformat(),
        "lastSeenAt": (T0 + timedelta(minutes=3)).isoformat(),
        "events": [{"message": "ann 3"}, {"message": "ann 2"}],
    }


async def test_actor_without_events_is_null(client: httpx.AsyncClient) -> None:
    data = await graphql_data(client, ACTOR_QUERY, {"email": "nobody@example.com", "first": 1})
    assert data["actor"] is None


async def test_actor_events_size_is_limited_like_pages(client: httpx.AsyncClient, database: Database) -> None:
    await seed(database, [event_row()])
    error = only_error(await graphql(client, ACTOR_QUERY, {"email": "ade@example.com", "first": 501}))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}


async def test_event_without_email_has_no_actor(client: httpx.AsyncClient, database: Database) -> None:
    await seed(database, [event_row(email=None)])
    data = await graphql_data(client, "{ events { nodes { email actor { email } } } }")
    assert data["events"]["nodes"] == [{"email": None, "actor": None}]


@pytest.fixture
async def fifty_events_by_many_actors(database: Database) -> None:
    """50 events from 20 emails (some repeat), one second apart."""
    await seed(
        database,
        [
            event_row(email=f"user{index % 20}@example.com", created_at=T0 + timedelta(seconds=index))
            for index in range(50)
        ],
    )


@pytest.mark.usefixtures("fifty_events_by_many_actors")
async def test_a_page_of_fifty_events_with_their_actors_costs_at_most_three_statements(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingPool(database.pool)
    monkeypatch.setattr(database, "pool", counting)
    data = await graphql_data(client, "{ events(first: 50) { nodes { id actor { email eventCount } } } }")
    monkeypatch.undo()
    nodes = data["events"]["nodes"]
    assert len(nodes) == 50
    assert {node["actor"]["email"] for node in nodes} == {f"user{i}@example.com" for i in range(20)}
    counts = {node["actor"]["email"]: node["actor"]["eventCount"] for node in nodes}
    assert counts["user0@example.com"] == 3 and counts["user19@example.com"] == 2
    assert len(counting.statements) <= 3, counting.statements
    assert counting.acquisitions <= 3


@pytest.mark.usefixtures("fifty_events_by_many_actors")
async def test_actor_events_for_a_whole_page_are_one_batched_statement(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingPool(database.pool)
    monkeypatch.setattr(database, "pool", counting)
    data = await graphql_data(
        client,
        "{ events(first: 50) { nodes { actor { events(first: 2) { id } } } } "
        "a: event(id: $ID1) { id } b: event(id: $ID2) { id } }".replace("$ID1", f'"{new_id()}"').replace(
            "$ID2", f'"{new_id()}"'
        ),
    )
    monkeypatch.undo()
    assert all(len(node["actor"]["events"]) == 2 for node in data["events"]["nodes"])
    assert data["a"] is None and data["b"] is None
    # page + actor stats + actor events + both event lookups (one batch)
    assert len(counting.statements) == 4, "\n---\n".join(counting.statements)
