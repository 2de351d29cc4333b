"""events(first/after, last/before, orderBy): keyset pages that never repeat or skip an event."""

import base64
from datetime import timedelta
from typing import Any

import httpx
import pytest

from db.engine import Database
from tests.graphql_schema.support import (
    T0,
    event_row,
    graphql,
    graphql_data,
    only_error,
    seed,
    spaced_rows,
)

PAGE_QUERY = """
query ($first: Int, $after: String, $last: Int, $before: String, $order: EventOrder!,
       $filter: EventFilter) {
  events(first: $first, after: $after, last: $last, before: $before, orderBy: $order,
         filter: $filter) {
    edges { cursor node { id } }
    nodes { id }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

RECORD = """
mutation { recordEvent(input: {component: "late", environment: "prod", email: "late@example.com",
                                message: "arrived while paging", data: {}}) { id } }
"""


async def page(client: httpx.AsyncClient, order: str = "NEWEST_FIRST", **arguments: Any) -> dict[str, Any]:
    data = await graphql_data(client, PAGE_QUERY, {"order": order, **arguments})
    connection = data["events"]
    assert [edge["node"]["id"] for edge in connection["edges"]] == [
        node["id"] for node in connection["nodes"]
    ]
    edges = connection["edges"]
    assert connection["pageInfo"]["startCursor"] == (edges[0]["cursor"] if edges else None)
    assert connection["pageInfo"]["endCursor"] == (edges[-1]["cursor"] if edges else None)
    return connection


def ids(connection: dict[str, Any]) -> list[str]:
    return [node["id"] for node in connection["nodes"]]


async def test_orders_sort_by_created_at_then_id(client: httpx.AsyncClient, database: Database) -> None:
    spaced = await seed(database, spaced_rows(3))
    # Three events sharing one timestamp: the id breaks the tie, the same way in both orders.
    tied = sorted(await seed(database, [event_row(created_at=T0 + timedelta(hours=1))] * 3))
    oldest_first = spaced + tied
    assert ids(await page(client, "OLDEST_FIRST")) == oldest_first
    assert ids(await page(client, "NEWEST_FIRST")) == oldest_first[::-1]
    assert ids(await page(client)) == oldest_first[::-1]  # NEWEST_FIRST is the default


def tied_rows() -> list[dict[str, Any]]:
    """40 events in pairs sharing one timestamp, so odd-sized pages cut through ties."""
    return [event_row(created_at=T0 + timedelta(seconds=index // 2)) for index in range(40)]


@pytest.mark.parametrize(
    ("order", "backward", "new_events_included"),
    [
        ("NEWEST_FIRST", False, False),  # new events land before the start: never reached
        ("OLDEST_FIRST", False, True),  # new events land at the end: reached last
        ("NEWEST_FIRST", True, True),  # walking from the end toward the newest
        ("OLDEST_FIRST", True, False),
    ],
)
async def test_paging_through_everything_while_events_arrive_repeats_and_skips_nothing(
    client: httpx.AsyncClient, database: Database, order: str, backward: bool, new_events_included: bool
) -> None:
    rows = tied_rows()
    seeded = await seed(database, rows)
    keys = sorted((row["created_at"], event_id) for row, event_id in zip(rows, seeded, strict=True))
    expected_seeded = [event_id for _, event_id in keys]
    if order == "NEWEST_FIRST":
        expected_seeded.reverse()
    seen: list[str] = []
    arrived: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        if backward:
            connection = await page(client, order, last=7, before=cursor)
            seen[:0] = ids(connection)
            more, cursor = connection["pageInfo"]["hasPreviousPage"], connection["pageInfo"]["startCursor"]
        else:
            connection = await page(client, order, first=7, after=cursor)
            seen.extend(ids(connection))
            more, cursor = connection["pageInfo"]["hasNextPage"], connection["pageInfo"]["endCursor"]
        pages += 1
        if not more:
            break
        arrived.append((await graphql_data(client, RECORD))["recordEvent"]["id"])
    assert pages >= 6
    assert len(seen) == len(set(seen))
    if not new_events_included:
        assert seen == expected_seeded
        return
    # Every event recorded mid-walk is newer than all seeded ones; they line up newest first
    # (NEWEST_FIRST) or oldest first (OLDEST_FIRST) on the side the walk ends.
    if order == "NEWEST_FIRST":
        assert seen == arrived[::-1] + expected_seeded
    else:
        assert seen == expected_seeded + arrived


async def test_page_info_tells_the_truth_at_both_ends(client: httpx.AsyncClient, database: Database) -> None:
    everything = await seed(database, spaced_rows(5))
    first = await page(client, "OLDEST_FIRST", first=2)
    assert ids(first) == everything[:2]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False

    middle = await page(client, "OLDEST_FIRST", first=2, after=first["pageInfo"]["endCursor"])
    assert ids(middle) == everything[2:4]
    assert (middle["pageInfo"]["hasPreviousPage"], middle["pageInfo"]["hasNextPage"]) == (True, True)

    last = await page(client, "OLDEST_FIRST", first=2, after=middle["pageInfo"]["endCursor"])
    assert ids(last) == everything[4:]
    assert (last["pageInfo"]["hasPreviousPage"], last["pageInfo"]["hasNextPage"]) == (True, False)

    beyond = await page(client, "OLDEST_FIRST", first=2, after=last["pageInfo"]["endCursor"])
    assert ids(beyond) == []
    assert (beyond["pageInfo"]["hasPreviousPage"], beyond["pageInfo"]["hasNextPage"]) == (True, False)

    backward = await page(client, "OLDEST_FIRST", last=2, before=middle["pageInfo"]["startCursor"])
    assert ids(backward) == everything[:2]
    assert (backward["pageInfo"]["hasPreviousPage"], backward["pageInfo"]["hasNextPage"]) == (False, True)

    tail = await page(client, "OLDEST_FIRST", last=2)
    assert ids(tail) == everything[3:]
    assert (tail["pageInfo"]["hasPreviousPage"], tail["pageInfo"]["hasNextPage"]) == (True, False)

    empty_start = await page(client, "OLDEST_FIRST", first=0, after=first["edges"][0]["cursor"])
    # first: 0 after the first event: that event itself lies before, the rest after.
    assert (empty_start["pageInfo"]["hasPreviousPage"], empty_start["pageInfo"]["hasNextPage"]) == (
        True,
        True,
    )

    between = await page(
        client, "NEWEST_FIRST", first=10, after=last["edges"][0]["cursor"], before=first["edges"][0]["cursor"]
    )
    assert ids(between) == everything[1:4][::-1]
    assert (between["pageInfo"]["hasPreviousPage"], between["pageInfo"]["hasNextPage"]) == (True, True)


async def test_page_info_counts_only_events_matching_the_filter(
    client: httpx.AsyncClient, database: Database
) -> None:
    other, wanted, later = await seed(
        database,
        [
            event_row(component="other", created_at=T0),
            event_row(component="wanted", created_at=T0 + timedelta(seconds=1)),
            event_row(component="other", created_at=T0 + timedelta(seconds=2)),
        ],
    )
    everything = await page(client, "OLDEST_FIRST")
    cursor_of = dict(zip(ids(everything), (edge["cursor"] for edge in everything["edges"]), strict=True))
    after_other = await page(
        client, "OLDEST_FIRST", first=5, after=cursor_of[other], filter={"component": "wanted"}
    )
    assert ids(after_other) == [wanted]
    assert after_other["pageInfo"]["hasPreviousPage"] is False
    before_later = await page(
        client, "OLDEST_FIRST", last=5, before=cursor_of[later], filter={"component": "wanted"}
    )
    assert ids(before_later) == [wanted]
    assert before_later["pageInfo"]["hasNextPage"] is False


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "",
        b64("garbage"),
        b64("2020-01-01T00:00:00+00:00|not-a-uuid"),
        b64("yesterday|6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        b64("2020-01-01T00:00:00|6f9619ff-8b86-d011-b42d-00c04fc964ff"),  # no offset
        b64("2020-01-01T00:00:00+00:00|6f9619ff-8b86-d011-b42d-00c04fc964ff|extra"),
    ],
)
@pytest.mark.parametrize("argument", ["after", "before"])
async def test_malformed_cursor_is_bad_user_input(
    client: httpx.AsyncClient, cursor: str, argument: str
) -> None:
    arguments: dict[str, Any] = {argument: cursor}
    if argument == "before":
        arguments["last"] = 5
    body = await graphql(client, PAGE_QUERY, {"order": "NEWEST_FIRST", **arguments})
    error = only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": argument}
    assert body["data"] is None


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"first": 501}, "first"),
        ({"first": -1}, "first"),
        ({"last": 501}, "last"),
        ({"last": -1}, "last"),
    ],
)
async def test_page_size_outside_limits_is_an_error_not_a_clamp(
    client: httpx.AsyncClient, arguments: dict[str, int], field: str
) -> None:
    error = only_error(await graphql(client, PAGE_QUERY, {"order": "NEWEST_FIRST", **arguments}))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    assert "500" in error["message"]


async def test_page_size_at_the_limit_is_served(client: httpx.AsyncClient, database: Database) -> None:
    await seed(database, spaced_rows(501))
    assert len(ids(await page(client, first=500))) == 500
    assert len(ids(await page(client, last=500))) == 500


async def test_first_and_last_together_are_refused(client: httpx.AsyncClient) -> None:
    body = await graphql(client, "{ events(first: 5, last: 5) { nodes { id } } }")
    assert only_error(body)["extensions"] == {"code": "BAD_USER_INPUT", "field": "last"}


async def test_first_defaults_to_fifty(client: httpx.AsyncClient, database: Database) -> None:
    await seed(database, spaced_rows(51))
    data = await graphql_data(client, "{ events { nodes { id } pageInfo { hasNextPage } } }")
    assert len(data["events"]["nodes"]) == 50
    assert data["events"]["pageInfo"]["hasNextPage"] is True
