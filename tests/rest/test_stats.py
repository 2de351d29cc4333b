"""GET /api/events/stats: the same counts as GraphQL's eventStats, the list's filters, clean 400s."""

from typing import Any

import httpx
import pytest

from db.engine import Database
from tests.db.test_stats import generated_rows
from tests.graphql_schema.support import event_row, graphql_data, seed

GRAPHQL_STATS = """
query Stats($filter: EventFilter, $groupBy: [EventDimension!], $bucket: TimeBucket, $timeZone: String,
            $first: Int) {
  eventStats(filter: $filter, groupBy: $groupBy, bucket: $bucket, timeZone: $timeZone, first: $first) {
    rows { component environment email bucket count firstCreatedAt lastCreatedAt }
    truncated
  }
}
"""

# (REST query parameters, the same request as GraphQL variables)
SAME_REQUESTS: list[tuple[list[tuple[str, str]], dict[str, Any]]] = [
    ([], {}),
    (
        [("group_by", "component"), ("bucket", "day"), ("time_zone", "Europe/Berlin")],
        {"groupBy": ["COMPONENT"], "bucket": "DAY", "timeZone": "Europe/Berlin"},
    ),
    (
        [("component", "order"), ("bucket", "week"), ("time_zone", "America/New_York"), ("first", "7")],
        {"filter": {"component": "order"}, "bucket": "WEEK", "timeZone": "America/New_York", "first": 7},
    ),
    (
        [("from_date", "2026-10-24T00:00:00Z"), ("group_by", "email"), ("group_by", "environment")],
        {"filter": {"from": "2026-10-24T00:00:00Z"}, "groupBy": ["EMAIL", "ENVIRONMENT"]},
    ),
    (
        [("email", "a@x.io"), ("bucket", "hour"), ("time_zone", "Asia/Kolkata"), ("first", "500")],
        {"filter": {"email": "a@x.io"}, "bucket": "HOUR", "timeZone": "Asia/Kolkata", "first": 500},
    ),
]


def as_graphql(row: dict[str, Any]) -> dict[str, Any]:
    names = {"first_created_at": "firstCreatedAt", "last_created_at": "lastCreatedAt"}
    return {names.get(key, key): value for key, value in row.items()}


async def test_rest_and_graphql_answer_the_same_rows(client: httpx.AsyncClient, database: Database) -> None:
    await seed(database, generated_rows(1_500))
    for params, variables in SAME_REQUESTS:
        response = await client.get("/api/events/stats", params=params)
        assert response.status_code == 200, response.text
        rest = response.json()
        data = await graphql_data(client, GRAPHQL_STATS, variables)
        assert rest["rows"], params
        assert [as_graphql(row) for row in rest["rows"]] == data["eventStats"]["rows"], params
        assert rest["truncated"] == data["eventStats"]["truncated"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"time_zone": "Mars/Olympus"}, "Unknown time zone"),
        ({"first": "501"}, "`first` must be between 0 and 500"),
        ({"first": "lots"}, "Input payload validation failed"),
        ({"group_by": "planet"}, "Input payload validation failed"),
        ({"bucket": "fortnight"}, "Input payload validation failed"),
        ({"from_date": "yesterday"}, "Invalid date"),
        ({"component": "a\x00b"}, "NUL"),
        # A scalar given twice is refused, as the export refuses it, not read as its last value.
        ({"from_date": ["yesterday", ""]}, "Give `from_date` once, not 2 times."),
        ({"time_zone": ["Mars/Olympus", "UTC"]}, "Give `time_zone` once, not 2 times."),
        ({"first": ["501", "5"]}, "Give `first` once, not 2 times."),
    ],
)
async def test_a_refused_request_is_a_400_with_a_message(
    client: httpx.AsyncClient, params: dict[str, Any], fragment: str
) -> None:
    response = await client.get("/api/events/stats", params={"bucket": "day", **params})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert fragment in body["message"] or fragment in str(body.get("errors")), body


async def test_list_valued_parameters_may_repeat(client: httpx.AsyncClient, database: Database) -> None:
    await seed(database, [event_row(component=name, environment="prod") for name in ("a", "b", "a")])
    params = {"environment": "prod", "group_by": ["component", "environment"]}
    response = await client.get("/api/events/stats", params=params)
    assert response.status_code == 200, response.text
    assert [(row["component"], row["environment"], row["count"]) for row in response.json()["rows"]] == [
        ("a", "prod", 2),
        ("b", "prod", 1),
    ]


async def test_stats_need_the_read_scope(auth_client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    for key, status in (("read", 200), ("write", 403), ("revoked", 401)):
        response = await auth_client.get("/api/events/stats", headers={"X-API-Key": keys[key]})
        assert response.status_code == status, (key, response.text)


async def test_the_route_is_documented(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/api/openapi.json")).json()["paths"]["/api/events/stats"]["get"]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert {"group_by", "bucket", "time_zone", "first", "component", "from_date"} <= set(parameters)
    assert parameters["group_by"]["schema"]["items"]["$ref"].endswith("/Dimension") or parameters["group_by"][
        "schema"
    ]["items"].get("enum") == ["component", "environment", "email"]
    assert {"200", "400", "503"} <= set(operation["responses"])
