"""`eventStats` over GraphQL: rows, truncation, refusals, cost."""

from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from api.settings import Settings
from db.engine import Database
from tests.graphql_schema.support import event_row, graphql, graphql_data, only_error, seed
from tests.support import app_sharing_services

STATS = """
query Stats($filter: EventFilter, $groupBy: [EventDimension!], $bucket: TimeBucket, $timeZone: String,
            $first: Int) {
  eventStats(filter: $filter, groupBy: $groupBy, bucket: $bucket, timeZone: $timeZone, first: $first) {
    rows { component environment email bucket count firstCreatedAt lastCreatedAt }
    truncated
  }
}
"""


async def seed_berlin_spring_forward(database: Database) -> None:
    """Events on both sides of Berlin's 2026 spring-forward (Mar 29, 01:00 UTC) and a day after."""
    await seed(
        database,
        [
            event_row(component="order", created_at=datetime(2026, 3, 28, 22, 59, tzinfo=UTC)),
            event_row(component="order", created_at=datetime(2026, 3, 28, 23, 0, tzinfo=UTC)),
            event_row(component="order", created_at=datetime(2026, 3, 29, 21, 59, tzinfo=UTC)),
            event_row(component="billing", created_at=datetime(2026, 3, 29, 22, 0, tzinfo=UTC)),
            event_row(
                component="order", email="bo@example.com", created_at=datetime(2026, 3, 30, 9, tzinfo=UTC)
            ),
        ],
    )


async def test_daily_counts_in_berlin_put_the_23_hour_day_in_one_bucket(
    client: httpx.AsyncClient, database: Database
) -> None:
    await seed_berlin_spring_forward(database)
    variables = {"groupBy": ["COMPONENT"], "bucket": "DAY", "timeZone": "Europe/Berlin"}
    data = await graphql_data(client, STATS, variables)
    assert data["eventStats"] == {
        "rows": [
            {
                "component": "order",
                "environment": None,
                "email": None,
                "bucket": "2026-03-27T23:00:00+00:00",
                "count": 1,
                "firstCreatedAt": "2026-03-28T22:59:00+00:00",
                "lastCreatedAt": "2026-03-28T22:59:00+00:00",
            },
            {
                "component": "order",
                "environment": None,
                "email": None,
                "bucket": "2026-03-28T23:00:00+00:00",
                "count": 2,
                "firstCreatedAt": "2026-03-28T23:00:00+00:00",
                "lastCreatedAt": "2026-03-29T21:59:00+00:00",
            },
            {
                "component": "billing",
                "environment": None,
                "email": None,
                "bucket": "2026-03-29T22:00:00+00:00",
                "count": 1,
                "firstCreatedAt": "2026-03-29T22:00:00+00:00",
                "lastCreatedAt": "2026-03-29T22:00:00+00:00",
            },
            {
                "component": "order",
                "environment": None,
                "email": None,
                "bucket": "2026-03-29T22:00:00+00:00",
                "count": 1,
                "firstCreatedAt": "2026-03-30T09:00:00+00:00",
                "lastCreatedAt": "2026-03-30T09:00:00+00:00",
            },
        ],
        "truncated": False,
    }


async def test_without_grouping_or_bucket_one_row_counts_every_match(
    client: httpx.AsyncClient, database: Database
) -> None:
    await seed_berlin_spring_forward(database)
    data = await graphql_data(client, "{ eventStats { rows { count bucket component } truncated } }")
    assert data["eventStats"] == {
        "rows": [{"count": 5, "bucket": None, "component": None}],
        "truncated": False,
    }
    by_email = await graphql_data(
        client, STATS, {"filter": {"email": "bo@example.com"}, "groupBy": ["EMAIL", "EMAIL"]}
    )
    assert [(row["email"], row["count"]) for row in by_email["eventStats"]["rows"]] == [("bo@example.com", 1)]


async def test_first_cuts_the_rows_and_says_so(client: httpx.AsyncClient, database: Database) -> None:
    await seed_berlin_spring_forward(database)
    data = await graphql_data(client, STATS, {"bucket": "HOUR", "first": 2})
    assert len(data["eventStats"]["rows"]) == 2 and data["eventStats"]["truncated"] is True


async def test_refusals_are_bad_user_input_naming_the_argument(client: httpx.AsyncClient) -> None:
    for variables, field in (
        ({"bucket": "DAY", "timeZone": "Mars/Olympus"}, "timeZone"),
        ({"first": 501}, "first"),
        ({"first": -1}, "first"),
        ({"filter": {"component": "a\u0000b"}}, "filter.component"),
    ):
        error = only_error(await graphql(client, STATS, variables))
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["extensions"]["field"] == field
    unknown = only_error(await graphql(client, STATS, {"groupBy": ["PLANET"]}))
    assert unknown["extensions"]["code"] == "BAD_USER_INPUT"
    assert "PLANET" in unknown["message"]


async def test_rows_cost_like_a_list_of_first_objects(app: FastAPI, settings: Settings) -> None:
    # The result is one node and each row one more; their scalars add nothing.
    small = app_sharing_services(app, settings.model_copy(update={"graphql_max_nodes": 600}))
    transport = httpx.ASGITransport(app=small)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert "errors" not in await graphql(client, "{ eventStats(first: 499) { rows { count } } }")
        twice = "{ a: eventStats(first: 499) { rows { count } } b: eventStats { rows { bucket } } }"
        refused = only_error(await graphql(client, twice))
    assert refused["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert refused["extensions"]["cost"] == (1 + 499) + (1 + 100)
