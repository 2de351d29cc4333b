"""POST /api/events/ refusals: the two legacy error shapes with their exact texts, in the legacy order."""

from typing import Any

import httpx
import pytest

from tests.rest.rows import count_rows
from tests.support import valid_event

SHAPE_FAILED = "Input payload validation failed"
MALFORMED = "The browser (or proxy) sent a request that this server could not understand."
FIELDS = ["component", "data", "email", "environment", "message"]


def shape_error(errors: dict[str, str]) -> dict[str, Any]:
    return {"errors": errors, "message": SHAPE_FAILED}


async def post_raw(client: httpx.AsyncClient, content: bytes, content_type: str | None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return await client.post("/api/events/", content=content, headers=headers)


def assert_400(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


@pytest.mark.parametrize("field", FIELDS)
async def test_missing_field_is_a_required_property_error(client: httpx.AsyncClient, field: str) -> None:
    body = valid_event()
    del body[field]
    response = await client.post("/api/events/", json=body)
    assert assert_400(response) == shape_error({field: f"'{field}' is a required property"})


async def test_empty_object_names_every_missing_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/events/", json={})
    assert assert_400(response) == shape_error(
        {field: f"'{field}' is a required property" for field in FIELDS}
    )


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("data", None, "None is not of type 'object'"),
        ("data", "text", "'text' is not of type 'object'"),
        ("data", [1, 2], "[1, 2] is not of type 'object'"),
        ("data", 42, "42 is not of type 'object'"),
        ("data", 1.5, "1.5 is not of type 'object'"),
        ("data", True, "True is not of type 'object'"),
        ("component", 1, "1 is not of type 'string'"),
        ("component", None, "None is not of type 'string'"),
        ("email", None, "None is not of type 'string'"),
        ("email", ["a@b.co"], "['a@b.co'] is not of type 'string'"),
        ("environment", False, "False is not of type 'string'"),
        ("message", {"text": "hi"}, "{'text': 'hi'} is not of type 'string'"),
    ],
)
async def test_wrong_json_type_is_named_by_field(
    client: httpx.AsyncClient, field: str, value: object, text: str
) -> None:
    response = await client.post("/api/events/", json=valid_event(**{field: value}))
    assert assert_400(response) == shape_error({field: text})


async def test_every_wrongly_typed_field_is_reported(client: httpx.AsyncClient) -> None:
    body = {"component": 1, "data": [], "email": 2, "environment": 3, "message": None}
    response = await client.post("/api/events/", json=body)
    assert assert_400(response) == shape_error(
        {
            "component": "1 is not of type 'string'",
            "data": "[] is not of type 'object'",
            "email": "2 is not of type 'string'",
            "environment": "3 is not of type 'string'",
            "message": "None is not of type 'string'",
        }
    )


@pytest.mark.parametrize(
    ("content", "content_type", "text"),
    [
        (b'[{"component": "order"}]', "application/json", "[{'component': 'order'}] is not of type 'object'"),
        (b"[]", "application/json", "[] is not of type 'object'"),
        (b'"just a string"', "application/json", "'just a string' is not of type 'object'"),
        (b"42", "application/json", "42 is not of type 'object'"),
        (b"null", "application/json", "None is not of type 'object'"),
        (b"", None, "None is not of type 'object'"),
        (b'{"component": "order"}', "text/plain", "None is not of type 'object'"),
        (b"component=order&message=x", "application/x-www-form-urlencoded", "None is not of type 'object'"),
        (b'{"component": "order"}', None, "None is not of type 'object'"),
    ],
)
async def test_body_that_is_not_a_json_object_is_reported_under_the_empty_key(
    client: httpx.AsyncClient, content: bytes, content_type: str | None, text: str
) -> None:
    response = await post_raw(client, content, content_type)
    assert assert_400(response) == shape_error({"": text})


async def test_valid_event_sent_with_non_json_content_type_is_refused(client: httpx.AsyncClient) -> None:
    response = await post_raw(client, httpx.Request("POST", "/", json=valid_event()).content, "text/plain")
    assert assert_400(response) == shape_error({"": "None is not of type 'object'"})


async def test_json_subtype_content_type_is_read_as_json(client: httpx.AsyncClient) -> None:
    content = httpx.Request("POST", "/", json=valid_event()).content
    response = await post_raw(client, content, "application/json; charset=utf-8")
    assert response.status_code == 201


@pytest.mark.parametrize(
    "content",
    [
        b'{"component": ',
        b"{'component': 'order'}",
        b'{"component": "order",}',
        b"not json at all",
        b"\xff\xfe\x00",
        b'{"data": NaN}',
        b"Infinity",
        b'{"a": 1} trailing',
    ],
)
async def test_malformed_json_is_the_browser_or_proxy_error(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await post_raw(client, content, "application/json")
    assert assert_400(response) == {"message": MALFORMED}


async def test_all_fields_empty_fails_on_the_email_first(client: httpx.AsyncClient) -> None:
    body = {"component": "", "data": {}, "email": "", "environment": "", "message": ""}
    response = await client.post("/api/events/", json=body)
    assert assert_400(response) == {"message": "Failed with Invalid email address."}


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "ade@gmail",
        "@gmail.com",
        "ade@.com",
        "ade gmail@x.com",
        "ade@gm ail.com",
        "ade@@gmail.com",
        "adé@gmail.com",
        "ade@gmail.com ",
        " ade@gmail.com",
        "ade@gmail_x.com",
    ],
)
async def test_invalid_email_is_refused(client: httpx.AsyncClient, email: str) -> None:
    response = await client.post("/api/events/", json=valid_event(email=email))
    assert assert_400(response) == {"message": "Failed with Invalid email address."}


@pytest.mark.parametrize("field", ["component", "environment", "message"])
@pytest.mark.parametrize("value", ["", " ", "\t\n  "])
async def test_empty_or_blank_field_is_refused(client: httpx.AsyncClient, field: str, value: str) -> None:
    response = await client.post("/api/events/", json=valid_event(**{field: value}))
    assert assert_400(response) == {"message": f"Failed with {field.capitalize()} can not be empty."}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"email": "bad", "component": "", "environment": "", "message": ""}, "Invalid email address."),
        ({"component": "", "environment": "", "message": ""}, "Component can not be empty."),
        ({"component": " ", "message": ""}, "Component can not be empty."),
        ({"environment": "", "message": " "}, "Environment can not be empty."),
    ],
)
async def test_rule_errors_come_in_the_legacy_order(
    client: httpx.AsyncClient, overrides: dict[str, str], reason: str
) -> None:
    response = await client.post("/api/events/", json=valid_event(**overrides))
    assert assert_400(response) == {"message": f"Failed with {reason}"}


async def test_shape_errors_come_before_rule_errors(client: httpx.AsyncClient) -> None:
    body = {"component": "", "email": "bad", "environment": "", "message": 5}
    response = await client.post("/api/events/", json=body)
    assert assert_400(response) == shape_error(
        {"data": "'data' is a required property", "message": "5 is not of type 'string'"}
    )


async def test_refused_events_are_not_stored(client: httpx.AsyncClient, database_url: str) -> None:
    for body in (
        {},
        valid_event(email="bad"),
        valid_event(component=""),
        valid_event(data=[]),
        valid_event(message="nul\x00"),
    ):
        assert (await client.post("/api/events/", json=body)).status_code == 400
    assert (await post_raw(client, b"{", "application/json")).status_code == 400
    assert await count_rows(database_url) == 0


@pytest.mark.parametrize("content", [b"", b"  \n"])
async def test_an_empty_body_declared_as_json_is_malformed_json(
    client: httpx.AsyncClient, content: bytes
) -> None:
    # Flask's get_json() ran json.loads on the empty body and failed: the generic 400 message.
    response = await post_raw(client, content, "application/json")
    assert assert_400(response) == {
        "message": "The browser (or proxy) sent a request that this server could not understand."
    }


async def test_an_email_with_one_trailing_newline_is_accepted_as_the_original_did(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/events/", json=valid_event(email="ade@example.com\n"))
    assert response.status_code == 201
    assert response.json()["email"] == "ade@example.com\n"
