"""Filter values PostgreSQL cannot compare are a 400, never a server error."""

import httpx
import pytest


@pytest.mark.parametrize("parameter", ["email", "environment", "component", "message"])
async def test_a_nul_character_in_a_filter_is_a_400(client: httpx.AsyncClient, parameter: str) -> None:
    response = await client.get("/api/events/", params={parameter: "a\x00b"})
    assert response.status_code == 400
    assert "NUL" in response.json()["message"]
