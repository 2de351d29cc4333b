"""The routes of CONTRACT.md: what answers where, with which status, headers and error shape."""

import asyncio
import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import valid_event

HEALTH_PATHS = ["/api/health", "/api/healthz"]
METHOD_NOT_ALLOWED = "The method is not allowed for the requested URL."


def assert_json_error(response: httpx.Response, status: int) -> dict[str, object]:
    """The contract's error: the status, application/json, an object with a "message" string."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("message"), str) and body["message"]
    return body


@pytest.mark.parametrize("path", HEALTH_PATHS)
async def test_health_routes_answer_healthy(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"status": "healthy"}'


@pytest.mark.parametrize("path", HEALTH_PATHS)
async def test_head_on_health_routes_answers_200_with_empty_body(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.head(path)
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.parametrize("path", HEALTH_PATHS)
async def test_head_on_health_routes_through_uvicorn_sends_no_body(live_server: str, path: str) -> None:
    # A raw socket: an HTTP client would not read a body after HEAD even if the server sent one.
    address = urlsplit(live_server)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(f"HEAD {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b""


@pytest.mark.parametrize("path", ["/api/events", "/api/events/"])
async def test_post_events_is_served_at_both_slash_forms(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, json=valid_event())
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json()["message"] == "order failed"


async def test_get_events_is_served_at_both_slash_forms_with_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/api/events/", json=valid_event())
    without_slash = await client.get("/api/events")
    with_slash = await client.get("/api/events/")
    assert without_slash.status_code == with_slash.status_code == 200
    assert without_slash.headers["content-type"] == "application/json"
    assert without_slash.content == with_slash.content
    assert len(with_slash.json()["events"]) == 1


async def test_get_event_by_id_returns_the_stored_event(client: httpx.AsyncClient) -> None:
    created = (await client.post("/api/events/", json=valid_event())).json()
    response = await client.get(f"/api/events/{created['id']}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == created
    assert list(response.json()) == list(created)


async def test_get_event_by_id_accepts_an_uppercase_uuid(client: httpx.AsyncClient) -> None:
    created = (await client.post("/api/events/", json=valid_event())).json()
    response = await client.get(f"/api/events/{created['id'].upper()}")
    assert response.status_code == 200
    assert response.json()["id"] == created["id"]


async def test_get_event_by_id_answers_404_message_when_absent(client: httpx.AsyncClient) -> None:
    assert_json_error(await client.get(f"/api/events/{uuid.uuid4()}"), 404)


@pytest.mark.parametrize("event_id", ["not-a-uuid", "123", "zzzzzzzz-zzzz-4zzz-8zzz-zzzzzzzzzzzz"])
async def test_get_event_by_id_answers_400_for_a_non_uuid(client: httpx.AsyncClient, event_id: str) -> None:
    assert_json_error(await client.get(f"/api/events/{event_id}"), 400)


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
@pytest.mark.parametrize("path", ["/api/events/", "/api/events"])
async def test_changing_methods_on_events_answer_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json=valid_event())
    body = assert_json_error(response, 405)
    assert body == {"message": METHOD_NOT_ALLOWED}
    allowed = {name.strip() for name in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert not allowed & {"DELETE", "PUT", "PATCH"}


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH", "POST"])
async def test_changing_methods_on_one_event_answer_405_allowing_get(
    client: httpx.AsyncClient, method: str
) -> None:
    response = await client.request(method, f"/api/events/{uuid.uuid4()}")
    assert assert_json_error(response, 405) == {"message": METHOD_NOT_ALLOWED}
    allowed = {name.strip() for name in response.headers["allow"].split(",")}
    assert "GET" in allowed
    assert not allowed & {"DELETE", "PUT", "PATCH", "POST"}


async def test_api_root_leads_to_the_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/")
    if response.is_redirect:
        assert response.headers["location"] == "/api/docs"
        response = await client.get(response.headers["location"])
    assert response.status_code == 200
    assert "swagger-ui" in response.text


async def test_swagger_json_is_an_openapi_3_document_of_the_events_api(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/swagger.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert {"get", "post"} <= set(document["paths"]["/api/events/"])
    assert "get" in document["paths"]["/api/events/{event_id}"]
    assert "get" in document["paths"]["/api/health"]


async def test_swagger_json_operation_ids_are_unique(client: httpx.AsyncClient) -> None:
    # OpenAPI 3: an operationId "MUST be unique among all operations described in the API".
    document = (await client.get("/api/swagger.json")).json()
    operation_ids = [
        operation["operationId"]
        for path_item in document["paths"].values()
        for operation in path_item.values()
        if isinstance(operation, dict) and "operationId" in operation
    ]
    assert len(operation_ids) == len(set(operation_ids))


async def test_docs_page_loads_only_assets_served_by_us(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert len(assets) >= 2  # at least the Swagger UI script and stylesheet
    for url in assets:
        assert url.startswith("/api/docs/assets/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    spec_urls = re.findall(r"""url:\s*["']([^"']+)["']""", html)
    assert spec_urls
    for url in spec_urls:
        assert url.startswith("/api/"), url
        spec = await client.get(url)
        assert spec.status_code == 200
        assert spec.json()["openapi"].startswith("3.")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nope"),
        ("GET", "/api/event"),
        ("GET", "/api/events/1/2"),
        ("POST", "/api/nope"),
        ("DELETE", "/api/nope/deeper"),
        ("GET", "/api/health/extra"),
    ],
)
async def test_unknown_api_paths_answer_404_json_message(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    assert_json_error(await client.request(method, path), 404)


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/api/events/", {}),
        ("GET", "/api/events/", {"params": {"from_date": "never"}}),
        ("GET", "/api/events/", {"headers": {"X-Fields": "events{id"}}),
        ("POST", "/api/events/", {"json": valid_event()}),
        ("POST", "/api/events/", {"json": valid_event(email="nope")}),
        ("POST", "/api/events/", {"json": {}}),
        ("POST", "/api/events/", {"content": b"{", "headers": {"Content-Type": "application/json"}}),
        ("GET", "/api/swagger.json", {}),
        ("GET", "/api/health", {}),
        ("DELETE", "/api/events/", {}),
        ("GET", "/api/unknown", {}),
    ],
)
async def test_every_json_answer_is_application_json_and_every_error_has_a_message(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, object]
) -> None:
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body, dict) and isinstance(body.get("message"), str)
