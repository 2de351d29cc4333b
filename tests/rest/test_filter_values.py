"""Filter values PostgreSQL cannot compare are a 400, never a server error."""

import httpx
import pytest


@pytest.mark.parametrize("parameter", ["email", "environment", "component", "message"])
async def test_a_nul_character_in_a_filter_is_a_400(client: httpx.AsyncClient, parameter: str) -> None:
    response = await client.get("/api/events/", params={parameter: "a\x00b"})
    assert response.status_code == 400
    assert "NUL" in response.json()["message"]


async def test_a_bad_filter_is_a_400_even_when_the_mask_leaves_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/events/", params={"email": "a\x00b"}, headers={"X-Fields": "other"})
    assert response.status_code == 400


@pytest.mark.parametrize("from_date", [" 04-16-2021", "04-16-2021\n", "\t2021-04-16"])
async def test_a_from_date_with_surrounding_whitespace_is_unparseable(
    client: httpx.AsyncClient, from_date: str
) -> None:
    response = await client.get("/api/events/", params={"from_date": from_date})
    assert response.status_code == 400
    assert response.json() == {"message": "Unable to retrieve events - Invalid date specified."}
