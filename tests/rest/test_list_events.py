"""GET /api/events/: every filter of the contract, the order, and the from_date formats."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.rest.rows import epoch_text, insert_rows

INVALID_DATE = {"message": "Unable to retrieve events - Invalid date specified."}


async def listed(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/api/events/", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["events"]
    return body["events"]


async def listed_messages(client: httpx.AsyncClient, **params: str) -> list[str]:
    return [event["message"] for event in await listed(client, **params)]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def test_no_events_is_an_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/events/")
    assert response.status_code == 200
    assert response.content == b'{"events":[]}'


async def test_no_parameters_returns_every_event_in_the_legacy_shape(
    client: httpx.AsyncClient, database_url: str
) -> None:
    moment = at("2021-04-16T10:11:12.345678+00:00")
    [event_id] = await insert_rows(
        database_url, {"data": {"age": 20}, "email": "ade@gmail.com", "created_at": moment}
    )
    await insert_rows(database_url, *({"message": f"m{n}"} for n in range(4)))
    events = await listed(client)
    assert len(events) == 5
    assert events[0] == {
        "component": "order",
        "data": {"age": 20},
        "email": "ade@gmail.com",
        "environment": "production",
        "message": "order failed",
        "id": event_id,
        "created_at": epoch_text(moment),
    }
    for event in events:
        assert list(event) == ["component", "data", "email", "environment", "message", "id", "created_at"]


async def test_events_come_oldest_first_then_by_id(client: httpx.AsyncClient, database_url: str) -> None:
    base = at("2021-04-16T00:00:00+00:00")
    tie = base + timedelta(hours=1)
    rows = [
        {"message": "third-b", "created_at": tie, "id": "ffffffff-0000-4000-8000-000000000000"},
        {"message": "fourth", "created_at": base + timedelta(days=3)},
        {"message": "first", "created_at": base - timedelta(days=400)},
        {"message": "third-a", "created_at": tie, "id": "0fffffff-0000-4000-8000-000000000000"},
        {"message": "second", "created_at": base + timedelta(microseconds=1)},
    ]
    random.Random(7).shuffle(rows)
    await insert_rows(database_url, *rows)
    assert await listed_messages(client) == ["first", "second", "third-a", "third-b", "fourth"]


@pytest.mark.parametrize(
    ("name", "stored", "other"),
    [
        ("email", "ade@gmail.com", "Ade@gmail.com"),
        ("environment", "production", "Production"),
        ("component", "order", "ORDER"),
    ],
)
async def test_exact_filters_are_case_sensitive_equality(
    client: httpx.AsyncClient, database_url: str, name: str, stored: str, other: str
) -> None:
    await insert_rows(
        database_url,
        {name: stored, "message": "wanted"},
        {name: other, "message": "other case"},
        {name: stored + "x", "message": "longer"},
        {name: stored[:-1], "message": "prefix"},
    )
    assert await listed_messages(client, **{name: stored}) == ["wanted"]
    assert await listed_messages(client, **{name: other}) == ["other case"]
    assert await listed_messages(client, **{name: "nobody"}) == []


async def test_message_filter_is_a_case_sensitive_substring(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await insert_rows(
        database_url,
        *(
            {"message": message}
            for message in ["order failed", "Order FAILED", "payment failed twice", "failed", "ok"]
        ),
    )
    assert await listed_messages(client, message="failed") == [
        "order failed",
        "payment failed twice",
        "failed",
    ]
    assert await listed_messages(client, message="FAILED") == ["Order FAILED"]
    assert await listed_messages(client, message="der fa") == ["order failed"]
    assert await listed_messages(client, message="order failed") == ["order failed"]


@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        ("%", ["100% done"]),
        ("_", ["snake_case"]),
        ("0%", ["100% done"]),
        ("e_c", ["snake_case"]),
        ("%done", []),
        ("s_ake", []),
        ("\\", ["back\\slash"]),
        ("'", ["it's"]),
    ],
)
async def test_message_filter_treats_like_wildcards_literally(
    client: httpx.AsyncClient, database_url: str, needle: str, expected: list[str]
) -> None:
    await insert_rows(
        database_url,
        *(
            {"message": message}
            for message in ["100% done", "snake_case", "snakeXcase", "back\\slash", "it's"]
        ),
    )
    assert await listed_messages(client, message=needle) == expected


DAY_EVENTS = [
    ("2021-04-15T00:00:00+00:00", "day before, start"),
    ("2021-04-15T23:59:59.999999+00:00", "day before, last microsecond"),
    ("2021-04-16T00:00:00+00:00", "midnight"),
    ("2021-04-16T09:59:59.999999+00:00", "morning"),
    ("2021-04-16T10:00:00+00:00", "ten"),
    ("2021-04-17T12:00:00+00:00", "next day"),
]
FROM_MIDNIGHT = ["midnight", "morning", "ten", "next day"]
FROM_TEN = ["ten", "next day"]


@pytest.mark.parametrize(
    ("from_date", "expected"),
    [
        ("04-16-2021", FROM_MIDNIGHT),
        ("4-16-2021", FROM_MIDNIGHT),
        ("04-15-2021", [name for _, name in DAY_EVENTS]),
        ("04-17-2021", ["next day"]),
        ("04-18-2021", []),
        ("2021-04-16", FROM_MIDNIGHT),
        ("2021-04-16T10:00:00Z", FROM_TEN),
        ("2021-04-16T10:00:00+00:00", FROM_TEN),
        ("2021-04-16T12:00:00+02:00", FROM_TEN),
        ("2021-04-16T10:00:00.000001Z", ["next day"]),
        ("2021-04-16T00:00:00Z", FROM_MIDNIGHT),
    ],
)
async def test_from_date_keeps_events_at_or_after_that_utc_instant(
    client: httpx.AsyncClient, database_url: str, from_date: str, expected: list[str]
) -> None:
    await insert_rows(
        database_url, *({"created_at": at(moment), "message": name} for moment, name in DAY_EVENTS)
    )
    assert await listed_messages(client, from_date=from_date) == expected


@pytest.mark.parametrize("from_date", ["4-6-2021", "04-06-2021", "4-06-2021", "04-6-2021"])
async def test_from_date_accepts_single_digit_month_and_day(
    client: httpx.AsyncClient, database_url: str, from_date: str
) -> None:
    await insert_rows(
        database_url,
        {"created_at": at("2021-04-05T23:59:59.999999+00:00"), "message": "before"},
        {"created_at": at("2021-04-06T00:00:00+00:00"), "message": "on the day"},
        {"created_at": at("2021-06-04T00:00:00+00:00"), "message": "june"},
    )
    assert await listed_messages(client, from_date=from_date) == ["on the day", "june"]


@pytest.mark.parametrize(
    "from_date",
    [
        "yesterday",
        "16-04-2021",
        "13-01-2021",
        "02-30-2021",
        "00-10-2021",
        "04/16/2021",
        "2021-13-01",
        "2021-04-16T25:00:00Z",
        "04-16-21",
        "4-16-2021-extra",
        "1618531200",
        "2021-04-16T10:00:00\x00",
        "2021-04-16T10:00:00\x00junk",
        "\x00",
    ],
)
async def test_unparseable_from_date_is_a_400_with_the_legacy_message(
    client: httpx.AsyncClient, database_url: str, from_date: str
) -> None:
    await insert_rows(database_url, {})
    response = await client.get("/api/events/", params={"from_date": from_date})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == INVALID_DATE


async def test_unknown_parameters_are_ignored(client: httpx.AsyncClient, database_url: str) -> None:
    await insert_rows(database_url, {"message": "a"}, {"message": "b"})
    assert await listed_messages(client, page="2", limit="1", sort="desc", foo="bar") == ["a", "b"]


async def test_empty_parameters_filter_nothing(client: httpx.AsyncClient, database_url: str) -> None:
    await insert_rows(database_url, {"message": "a"}, {"message": "b", "component": "other"})
    assert await listed_messages(client, email="", component="", environment="", message="") == ["a", "b"]


async def test_filters_combine_with_and(client: httpx.AsyncClient, database_url: str) -> None:
    await insert_rows(
        database_url,
        {"message": "match", "component": "order", "environment": "production"},
        {"message": "wrong env", "component": "order", "environment": "staging"},
        {"message": "wrong component", "component": "billing", "environment": "production"},
    )
    assert await listed_messages(client, component="order", environment="production") == ["match"]


async def test_seed_readme_query_with_all_parameters(client: httpx.AsyncClient, database_url: str) -> None:
    # The README's `/events/?email=ade%40gmail.com&environment=production&component=order
    # &message=failed&from_date=04-16-2021`, on /api/events/.
    matching = {
        "email": "ade@gmail.com",
        "environment": "production",
        "component": "order",
        "data": {"age": 20},
        "created_at": at("2021-04-16T08:00:00+00:00"),
    }
    [wanted_id] = await insert_rows(database_url, {**matching, "message": "order failed"})
    await insert_rows(
        database_url,
        {**matching, "message": "order placed"},
        {**matching, "message": "order failed", "email": "bola@gmail.com"},
        {**matching, "message": "order failed", "environment": "staging"},
        {**matching, "message": "order failed", "component": "payment"},
        {**matching, "message": "order failed", "created_at": at("2021-04-15T23:00:00+00:00")},
    )
    response = await client.get(
        "/api/events/?email=ade%40gmail.com&environment=production&component=order"
        "&message=failed&from_date=04-16-2021"
    )
    assert response.status_code == 200
    assert response.json() == {
        "events": [
            {
                "component": "order",
                "data": {"age": 20},
                "email": "ade@gmail.com",
                "environment": "production",
                "message": "order failed",
                "id": wanted_id,
                "created_at": epoch_text(at("2021-04-16T08:00:00+00:00")),
            }
        ]
    }


async def test_events_posted_through_the_api_are_listed_in_posting_order(client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/api/events/", json=_event(n))).json()["id"] for n in range(5)]
    assert [event["id"] for event in await listed(client)] == ids


def _event(n: int) -> dict[str, Any]:
    return {"component": "c", "data": {"n": n}, "email": "a@b.co", "environment": "e", "message": f"m{n}"}
