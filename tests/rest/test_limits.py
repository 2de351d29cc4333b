"""Each event size limit, just under and just over, through both doors (one rule set)."""

from typing import Any

import httpx
import pytest

from db.validation import DEFAULT_EVENT_LIMITS as LIMITS
from tests.graphql_schema.support import graphql
from tests.support import app_sharing_services, valid_event

RECORD = "mutation($input: RecordEventInput!) { recordEvent(input: $input) { id } }"


def _nested(depth: int) -> dict[str, Any]:
    """A `data` object nested `depth` levels deep (the top object is level 1)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def _data_of_size(size: int) -> dict[str, Any]:
    """An object whose compact JSON encoding is exactly `size` bytes."""
    return {"k": "x" * (size - len('{"k":""}'))}


CASES = [
    (
        "component",
        {"component": "c" * LIMITS.max_component_length},
        {"component": "c" * (LIMITS.max_component_length + 1)},
    ),
    (
        "environment",
        {"environment": "e" * LIMITS.max_environment_length},
        {"environment": "e" * (LIMITS.max_environment_length + 1)},
    ),
    (
        "email",
        {"email": "a" * (LIMITS.max_email_length - 6) + "@b.com"},
        {"email": "a" * (LIMITS.max_email_length - 5) + "@b.com"},
    ),
    (
        "message",
        {"message": "m" * LIMITS.max_message_length},
        {"message": "m" * (LIMITS.max_message_length + 1)},
    ),
    (
        "data",
        {"data": _data_of_size(LIMITS.max_data_bytes)},
        {"data": _data_of_size(LIMITS.max_data_bytes + 1)},
    ),
    ("data", {"data": _nested(LIMITS.max_data_depth)}, {"data": _nested(LIMITS.max_data_depth + 1)}),
]
IDS = ["component", "environment", "email", "message", "data-bytes", "data-depth"]


@pytest.mark.parametrize(("field", "under", "over"), CASES, ids=IDS)
async def test_rest_accepts_just_under_a_limit_and_refuses_just_over(
    client: httpx.AsyncClient, field: str, under: dict[str, Any], over: dict[str, Any]
) -> None:
    assert (await client.post("/api/events/", json=valid_event(**under))).status_code == 201
    refused = await client.post("/api/events/", json=valid_event(**over))
    assert refused.status_code == 400
    assert refused.json()["message"].startswith(f"Failed with {field.capitalize()} ")


@pytest.mark.parametrize(("field", "under", "over"), CASES, ids=IDS)
async def test_graphql_accepts_just_under_a_limit_and_refuses_just_over(
    client: httpx.AsyncClient, field: str, under: dict[str, Any], over: dict[str, Any]
) -> None:
    assert "errors" not in await graphql(client, RECORD, {"input": valid_event(**under)})
    refused = await graphql(client, RECORD, {"input": valid_event(**over)})
    assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


async def test_the_limits_follow_the_settings(app: Any, settings: Any) -> None:
    strict = app_sharing_services(app, settings.model_copy(update={"max_message_length": 5}))
    transport = httpx.ASGITransport(app=strict)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.post("/api/events/", json=valid_event(message="12345"))).status_code == 201
        refused = await http.post("/api/events/", json=valid_event(message="123456"))
    assert refused.json() == {"message": "Failed with Message is longer than 5 characters."}
