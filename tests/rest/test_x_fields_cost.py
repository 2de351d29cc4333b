"""What an X-Fields mask may cost: its size is bounded, and applying it to a row touches the row's
keys, not the mask's names."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from api.settings import Settings
from rest.fields_mask import MAX_MASK_BYTES, MaskParseError, apply_fields_mask, parse_fields_mask
from tests.support import app_sharing_services, valid_event

EVENT_KEYS = ["component", "data", "email", "environment", "message", "id", "created_at"]
# The mask of the report: 100,000 names, about 690 KB.
HUGE_MASK = "events{" + ",".join(f"name{index}" for index in range(100_000)) + ",id}"


class CountingRow(dict[str, object]):
    """A row that counts how often a key is looked up in it."""

    lookups = 0

    def __contains__(self, key: object) -> bool:
        CountingRow.lookups += 1
        return super().__contains__(key)

    def __getitem__(self, key: str) -> object:
        CountingRow.lookups += 1
        return super().__getitem__(key)


def _largest_mask_under_the_limit(prefix: str = "", suffix: str = "") -> str:
    """`prefix` + as many unknown names as fit + `created_at,id` + `suffix`, within MAX_MASK_BYTES."""
    names = ["created_at", "id"]
    while len(prefix + ",".join([f"unknown{len(names)}", *names]) + suffix) <= MAX_MASK_BYTES:
        names.insert(0, f"unknown{len(names)}")
    return prefix + ",".join(names) + suffix


def test_applying_a_long_mask_looks_up_each_row_key_at_most_twice() -> None:
    mask = parse_fields_mask(_largest_mask_under_the_limit())
    assert len(mask) > 300
    rows = [CountingRow({key: f"{key} {index}" for key in EVENT_KEYS}) for index in range(500)]
    CountingRow.lookups = 0
    masked = [apply_fields_mask(row, mask) for row in rows]
    assert CountingRow.lookups <= 2 * len(EVENT_KEYS) * len(rows), CountingRow.lookups
    # The mask's order, as flask-restplus answered, not the row's.
    assert masked[7] == {"created_at": "created_at 7", "id": "id 7"}
    assert list(masked[7]) == ["created_at", "id"]


def test_a_nested_long_mask_is_applied_by_the_row_keys_too() -> None:
    nested_names = ",".join(f"unknown{index}" for index in range(300))
    mask = parse_fields_mask(f"data{{{nested_names},b,a}},id")
    row = CountingRow({"id": "x", "message": "m", "data": CountingRow({"a": 1, "b": 2, "c": 3})})
    CountingRow.lookups = 0
    assert apply_fields_mask(row, mask) == {"data": {"b": 2, "a": 1}, "id": "x"}
    assert list(apply_fields_mask(row, mask)["data"]) == ["b", "a"]  # type: ignore[call-overload]
    assert CountingRow.lookups <= 2 * (3 + 3) * 2


def test_a_mask_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(MaskParseError, match=f"larger than the limit of {MAX_MASK_BYTES} bytes"):
        parse_fields_mask("id," + "x" * MAX_MASK_BYTES)
    assert parse_fields_mask(_largest_mask_under_the_limit())


@pytest.fixture
async def roomy_client(app: FastAPI, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app whose header limit lets the huge mask through to the route."""
    roomy = app_sharing_services(
        app, settings.model_copy(update={"max_request_header_bytes": 2 * len(HUGE_MASK)})
    )
    transport = httpx.ASGITransport(app=roomy)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_mask_of_100000_names_is_a_400_in_the_contract_style(
    roomy_client: httpx.AsyncClient, method: str
) -> None:
    kwargs = {"json": valid_event()} if method == "POST" else {}
    response = await roomy_client.request(method, "/api/events/", headers={"X-Fields": HUGE_MASK}, **kwargs)
    assert response.status_code == 400, response.text[:200]
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "message": f"Mask parse error: The mask is larger than the limit of {MAX_MASK_BYTES} bytes"
    }
    if method == "POST":
        assert (await roomy_client.get("/api/events/")).json() == {"events": []}


async def test_a_long_mask_under_the_limit_still_masks_a_list(client: httpx.AsyncClient) -> None:
    created = [(await client.post("/api/events/", json=valid_event(message=m))).json() for m in "abc"]
    mask = _largest_mask_under_the_limit("events{", "}")
    response = await client.get("/api/events/", headers={"X-Fields": mask})
    assert response.status_code == 200, response.text[:200]
    assert response.json() == {"events": [{"created_at": e["created_at"], "id": e["id"]} for e in created]}
