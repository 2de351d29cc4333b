"""Inputs at the edges: any Unicode, long texts, NUL, absurd nesting, numbers beyond a float."""

import json
from typing import Any

import httpx
import orjson
import pytest

from tests.rest.rows import count_rows
from tests.support import valid_event

EMOJI = "🚀🔥👨‍👩‍👧 e\u0301"
CJK = "注文に失敗しました 订单失败 주문 실패"
RTL = "فشل الطلب שלום \u200fעולם"  # noqa: RUF001 (Hebrew letters that look Latin are the point)


def unicode_event(tag: str) -> dict[str, Any]:
    # The email stays ASCII: the legacy pattern admits nothing else (see test_validation_errors).
    return valid_event(
        component=f"{EMOJI} {tag}",
        environment=f"{CJK} {tag}",
        message=f"{RTL} {EMOJI} {CJK} {tag}",
        data={
            EMOJI: CJK,
            CJK: [RTL, {RTL: EMOJI}],
            "mixed": f"{EMOJI}{CJK}{RTL}",
            "escapes": '\u0001\u001f\t\n"\\ \u2028\u2029',
        },
    )


async def post_raw_json(client: httpx.AsyncClient, content: bytes) -> httpx.Response:
    return await client.post("/api/events/", content=content, headers={"Content-Type": "application/json"})


async def test_unicode_in_every_free_text_field_and_in_data_round_trips(client: httpx.AsyncClient) -> None:
    sent = unicode_event("one")
    response = await client.post("/api/events/", json=sent)
    assert response.status_code == 201
    created = response.json()
    assert {key: created[key] for key in sent} == sent
    assert (await client.get(f"/api/events/{created['id']}")).json() == created
    assert (await client.get("/api/events/")).json() == {"events": [created]}


async def test_unicode_sent_unescaped_as_utf8_round_trips(client: httpx.AsyncClient) -> None:
    sent = unicode_event("raw")
    response = await post_raw_json(client, orjson.dumps(sent))  # orjson writes UTF-8, not \u escapes
    assert response.status_code == 201
    assert {key: response.json()[key] for key in sent} == sent


async def test_unicode_filters_match_exactly(client: httpx.AsyncClient) -> None:
    wanted = (await client.post("/api/events/", json=unicode_event("one"))).json()
    await client.post("/api/events/", json=unicode_event("two"))
    for params in (
        {"component": wanted["component"]},
        {"environment": wanted["environment"]},
        {"message": f"{EMOJI} {CJK} one"},
        {"message": "one", "component": wanted["component"], "environment": wanted["environment"]},
    ):
        response = await client.get("/api/events/", params=params)
        assert response.json() == {"events": [wanted]}, params


async def test_ten_thousand_character_message_round_trips(client: httpx.AsyncClient) -> None:
    message = ("order failed 注文 🚀 " * 600)[:9_999] + "!"
    assert len(message) == 10_000
    created = (await client.post("/api/events/", json=valid_event(message=message))).json()
    assert created["message"] == message
    assert (await client.get(f"/api/events/{created['id']}")).json()["message"] == message
    listed = (await client.get("/api/events/", params={"message": message})).json()["events"]
    assert [event["id"] for event in listed] == [created["id"]]


@pytest.mark.parametrize("field", ["component", "environment", "message"])
async def test_nul_character_in_a_text_field_is_a_400(client: httpx.AsyncClient, field: str) -> None:
    response = await client.post("/api/events/", json=valid_event(**{field: "before\x00after"}))
    assert response.status_code == 400
    assert isinstance(response.json()["message"], str)


async def test_nul_character_in_the_email_is_an_invalid_email(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/events/", json=valid_event(email="ade\x00@gmail.com"))
    assert response.status_code == 400
    assert response.json() == {"message": "Failed with Invalid email address."}


@pytest.mark.parametrize(
    "data",
    [
        {"key": "value\x00"},
        {"key\x00": "value"},
        {"list": ["ok", ["\x00"]]},
        {"deep": {"deeper": {"x": "\x00"}}},
    ],
)
async def test_nul_character_inside_data_is_a_400(
    client: httpx.AsyncClient, database_url: str, data: dict[str, Any]
) -> None:
    response = await client.post("/api/events/", json=valid_event(data=data))
    assert response.status_code == 400
    assert isinstance(response.json()["message"], str)
    assert await count_rows(database_url) == 0


@pytest.mark.parametrize(
    "content",
    [
        b'{"component": "a", "data": {}, "email": "a@b.co", "environment": "e", "message": "\\ud800"}',
        b'{"component": "a", "data": {"\\udfff": 1}, "email": "a@b.co", "environment": "e", "message": "m"}',
    ],
)
async def test_lone_surrogate_escape_is_a_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await post_raw_json(client, content)
    assert response.status_code == 400
    assert isinstance(response.json()["message"], str)


@pytest.mark.parametrize("depth", [100_000, 1_000])
async def test_absurdly_deep_nesting_is_a_400(
    client: httpx.AsyncClient, database_url: str, depth: int
) -> None:
    nested = b"[" * depth + b"]" * depth
    body = (
        b'{"component": "a", "email": "a@b.co", "environment": "e", "message": "m", "data": {"x": %s}}'
        % nested
    )
    response = await post_raw_json(client, body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["message"], str)
    assert await count_rows(database_url) == 0


async def test_absurdly_deep_nesting_of_the_whole_body_is_a_400(client: httpx.AsyncClient) -> None:
    response = await post_raw_json(client, b'{"a":' * 200_000 + b"1" + b"}" * 200_000)
    assert response.status_code == 400
    assert isinstance(response.json()["message"], str)


async def test_moderate_nesting_in_data_is_accepted(client: httpx.AsyncClient) -> None:
    data: dict[str, Any] = {"leaf": True}
    for _ in range(30):
        data = {"next": data}
    response = await client.post("/api/events/", json=valid_event(data=data))
    assert response.status_code == 201
    assert response.json()["data"] == data


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"[1e999]"])
async def test_number_beyond_float_range_in_data_is_a_400(
    client: httpx.AsyncClient, database_url: str, number: bytes
) -> None:
    body = (
        b'{"component": "a", "email": "a@b.co", "environment": "e", "message": "m", "data": {"x": %s}}'
        % number
    )
    response = await post_raw_json(client, body)
    assert response.status_code == 400
    assert isinstance(response.json()["message"], str)
    assert await count_rows(database_url) == 0


@pytest.mark.parametrize("number", [2**70, -(2**70), 2**64, 10**100])
async def test_huge_integer_in_data_round_trips_exactly(client: httpx.AsyncClient, number: int) -> None:
    data = {"n": number, "list": [number, {"inner": number}]}
    content = b'{"component": "a", "email": "a@b.co", "environment": "e", "message": "m", "data": %s}' % (
        json.dumps(data).encode()
    )
    response = await post_raw_json(client, content)
    assert response.status_code == 201, response.text
    assert str(number).encode() in response.content
    created = response.json()
    assert created["data"] == data
    assert (await client.get(f"/api/events/{created['id']}")).json()["data"] == data
    assert (await client.get("/api/events/")).json()["events"][0]["data"] == data


async def test_float_digits_round_trip(client: httpx.AsyncClient) -> None:
    data = {"sum": 0.1 + 0.2, "tiny": 5e-324, "max": 1.7976931348623157e308, "third": 1 / 3}
    created = (await client.post("/api/events/", json=valid_event(data=data))).json()
    assert {key: float(value) for key, value in created["data"].items()} == data
