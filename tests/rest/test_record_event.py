"""POST /api/events/: the stored event comes back in the legacy shape."""

import re
import uuid

import httpx

from tests.support import valid_event


async def test_post_valid_event_returns_it_with_id_and_created_at(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/events/", json=valid_event())
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["component", "data", "email", "environment", "message", "id", "created_at"]
    assert body["data"] == {"age": 20}
    assert uuid.UUID(body["id"]).version == 4
    assert re.fullmatch(r"\d+\.\d{1,6}", body["created_at"])
