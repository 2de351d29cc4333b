"""POST /api/events/: the stored event comes back in the legacy shape."""

import re
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from tests.rest.rows import epoch_text, insert_rows, stored_epoch
from tests.support import valid_event


async def test_post_valid_event_returns_it_with_id_and_created_at(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/events/", json=valid_event())
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["component", "data", "email", "environment", "message", "id", "created_at"]
    assert body["data"] == {"age": 20}
    assert uuid.UUID(body["id"]).version == 7  # time-ordered (db/ids.py); still a UUID, as ever
    assert re.fullmatch(r"\d+\.\d{1,6}", body["created_at"])


UUID7_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


async def test_post_returns_a_lowercase_hyphenated_uuid7_id(client: httpx.AsyncClient) -> None:
    body = (await client.post("/api/events/", json=valid_event())).json()
    assert UUID7_TEXT.fullmatch(body["id"])


async def test_created_at_is_str_of_the_stored_utc_epoch(
    client: httpx.AsyncClient, database_url: str
) -> None:
    before = time.time()
    body = (await client.post("/api/events/", json=valid_event())).json()
    after = time.time()
    assert isinstance(body["created_at"], str)
    assert body["created_at"] == await stored_epoch(database_url, body["id"])
    assert before - 1 <= float(body["created_at"]) <= after + 1


async def test_created_at_keeps_python_float_text_for_any_microseconds(
    client: httpx.AsyncClient, database_url: str
) -> None:
    # Trailing zeros dropped, no exponent, at most 6 decimals: str(float) of the exact epoch.
    moments = [
        datetime(2026, 11, 29, 10, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 29, 10, 0, 0, 400000, tzinfo=UTC),
        datetime(2026, 11, 29, 10, 0, 0, 405720, tzinfo=UTC),
        datetime(2026, 11, 29, 10, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 29, 10, 0, 0, 999999, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 123456, tzinfo=UTC),
    ]
    ids = await insert_rows(database_url, *({"created_at": moment} for moment in moments))
    for event_id, moment in zip(ids, moments, strict=True):
        body = (await client.get(f"/api/events/{event_id}")).json()
        assert body["created_at"] == epoch_text(moment) == await stored_epoch(database_url, event_id)
    assert epoch_text(moments[0]) == "1795946400.0"
    assert epoch_text(moments[2]) == "1795946400.40572"


async def test_post_stores_the_event_it_returns(client: httpx.AsyncClient) -> None:
    created = (await client.post("/api/events/", json=valid_event())).json()
    listed = (await client.get("/api/events/")).json()
    assert listed == {"events": [created]}
    assert (await client.get(f"/api/events/{created['id']}")).json() == created


async def test_post_ignores_unknown_fields_and_client_sent_id_and_created_at(
    client: httpx.AsyncClient, database_url: str
) -> None:
    client_id = str(uuid.uuid4())
    body = valid_event(id=client_id, created_at="12411411.23", extra={"x": 1}, status="new")
    response = await client.post("/api/events/", json=body)
    assert response.status_code == 201
    created = response.json()
    assert list(created) == ["component", "data", "email", "environment", "message", "id", "created_at"]
    assert created["id"] != client_id
    assert created["created_at"] != "12411411.23"
    assert created["created_at"] == await stored_epoch(database_url, created["id"])
    assert (await client.get(f"/api/events/{client_id}")).status_code == 404


async def test_two_identical_posts_make_two_events(client: httpx.AsyncClient) -> None:
    first = (await client.post("/api/events/", json=valid_event())).json()
    second = (await client.post("/api/events/", json=valid_event())).json()
    assert first["id"] != second["id"]
    events = (await client.get("/api/events/")).json()["events"]
    assert [event["id"] for event in events] == [first["id"], second["id"]]


async def test_seed_readme_post_example_round_trips(client: httpx.AsyncClient) -> None:
    # The README's example request, as its clients send it.
    request = {
        "component": "order",
        "data": {"age": 20},
        "email": "ade@gmail.com",
        "environment": "production",
        "message": "order failed",
    }
    response = await client.post("/api/events/", json=request)
    assert response.status_code == 201
    body = response.json()
    assert {key: body[key] for key in request} == request


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"age": 20},
        {"nested": {"list": [1, 2.5, "three", None, True, False, {"deep": []}]}},
        {"float": 0.1, "negative": -3, "exp": 1.5e-10},
        {"empty_string": "", "spaces": "  ", "quote": "\"'\\/"},
    ],
)
async def test_data_objects_round_trip(client: httpx.AsyncClient, data: dict[str, object]) -> None:
    created = (await client.post("/api/events/", json=valid_event(data=data))).json()
    assert created["data"] == data
    assert (await client.get(f"/api/events/{created['id']}")).json()["data"] == data


@pytest.mark.parametrize(
    "email",
    ["a@b.co", "first.last+tag-x_y@sub-domain.example.co.uk", "UPPER@EXAMPLE.COM", "1@2.3"],
)
async def test_post_accepts_emails_the_original_pattern_accepts(
    client: httpx.AsyncClient, email: str
) -> None:
    response = await client.post("/api/events/", json=valid_event(email=email))
    assert response.status_code == 201
    assert response.json()["email"] == email


async def test_large_float_in_data_keeps_its_value(client: httpx.AsyncClient) -> None:
    # jsonb stores numbers as numeric and writes 1e300 out in full: the same JSON number.
    created = (await client.post("/api/events/", json=valid_event(data={"x": 1e300}))).json()
    assert float(created["data"]["x"]) == 1e300
