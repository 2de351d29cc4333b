"""Request ids, the body size limit and CORS, through the whole app."""

import logging

import httpx
import pytest
from fastapi import FastAPI

from api.settings import Settings
from tests.support import app_sharing_services, valid_event


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/api/health")
    second = await client.get("/api/health")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_plain_client_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health", headers={"X-Request-ID": "trace-42.a"})
    assert response.headers["x-request-id"] == "trace-42.a"


async def test_a_request_id_that_could_forge_log_lines_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health", headers={"X-Request-ID": "a b\tc"})
    assert response.headers["x-request-id"] != "a b\tc"


async def _limited_app_client(app: FastAPI, settings: Settings, limit: int) -> httpx.AsyncClient:
    limited = app_sharing_services(app, settings.model_copy(update={"max_request_body_bytes": limit}))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://testserver")


async def test_body_just_under_the_limit_is_accepted(app: FastAPI, settings: Settings) -> None:
    body = httpx.Request("POST", "/", json=valid_event(message="x" * 100)).read()
    async with await _limited_app_client(app, settings, len(body)) as http:
        response = await http.post("/api/events/", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201


async def test_body_over_the_limit_is_refused_with_413_and_nothing_written(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient
) -> None:
    body = httpx.Request("POST", "/", json=valid_event(message="x" * 100)).read()
    async with await _limited_app_client(app, settings, len(body) - 1) as http:
        response = await http.post("/api/events/", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {
        "message": f"The request body is larger than the limit of {len(body) - 1} bytes."
    }
    assert (await client.get("/api/events/")).json() == {"events": []}


async def test_a_streamed_body_without_length_over_the_limit_is_refused(
    app: FastAPI, settings: Settings
) -> None:
    async def chunks():  # no Content-Length: the limit must count what arrives
        for _ in range(10):
            yield b"x" * 1000

    async with await _limited_app_client(app, settings, 5000) as http:
        response = await http.post(
            "/api/events/", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_allows_only_the_configured_origins(app: FastAPI, settings: Settings) -> None:
    cors_app = app_sharing_services(
        app, settings.model_copy(update={"cors_allowed_origins": ["https://app.example.com"]})
    )
    transport = httpx.ASGITransport(app=cors_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        preflight = await http.options(
            "/api/events/",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        other = await http.get("/api/health", headers={"Origin": "https://evil.example.com"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers


async def test_one_log_line_per_request_without_keys_bodies_or_query_strings(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret_key = "ak_0123456789ab_TopSecretKeyMaterial"
    with caplog.at_level(logging.DEBUG):
        await client.post(
            "/api/events/",
            json=valid_event(message="the-body-secret", email="body-secret@example.com"),
            headers={"Authorization": f"Bearer {secret_key}", "X-Request-ID": "req-1"},
        )
        await client.get("/api/events/?email=query-secret@example.com", headers={"X-API-Key": secret_key})
        await client.post("/api/events/", json=valid_event(email="not-an-email-secret"))
    access = [record for record in caplog.records if record.name == "api.access"]
    assert len(access) == 3
    assert "method=POST path=/api/events/ status=201" in access[0].getMessage()
    assert "request_id=req-1" in access[0].getMessage()
    # The service's records only: the test's own httpx client logs its request URLs.
    server_records = [record for record in caplog.records if not record.name.startswith("httpx")]
    everything = "\n".join(record.getMessage() for record in server_records)
    for secret in ("TopSecretKeyMaterial", "the-body-secret", "body-secret@", "query-secret", "not-an-email"):
        assert secret not in everything
    assert not any(record.exc_info for record in server_records)
