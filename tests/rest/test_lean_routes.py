"""The lean routes (rest.events.lean_routes) answer exactly as the FastAPI routes they stand in front of.

Each request goes to the app as served (lean routes first) and to the same app without them (the
FastAPI routes alone), on the same services; status, body and the headers a client reads must agree.
"""

import httpx
import pytest
from fastapi import FastAPI

from api.settings import Settings
from tests.support import app_sharing_services, valid_event

EVENT = valid_event(component="lean", environment="prod", message="posted")

# (method, url, headers, JSON body or None): filters, repeats, errors, masks, keys, methods.
REQUESTS: list[tuple[str, str, dict[str, str], object]] = [
    ("GET", "/api/events/", {}, None),
    ("GET", "/api/events", {}, None),
    ("GET", "/api/events/?component=lean&environment=prod", {}, None),
    ("GET", "/api/events/?component=other&component=lean", {}, None),
    ("GET", "/api/events/?email=lean%40x.io&from_date=2020-01-01", {}, None),
    ("GET", "/api/events/?from_date=13-45-2021", {}, None),
    ("GET", "/api/events/?component=a%00b", {}, None),
    ("GET", "/api/events/?message=hello&unknown=1", {}, None),
    ("GET", "/api/events/", {"X-Fields": "events{id,message}"}, None),
    ("GET", "/api/events/", {"X-Fields": "count"}, None),
    ("GET", "/api/events/", {"X-Fields": "events{"}, None),
    ("HEAD", "/api/events/", {}, None),
    ("PUT", "/api/events/", {}, None),
    ("DELETE", "/api/events", {}, None),
    ("POST", "/api/events/", {"X-Fields": "component,message"}, EVENT),
    ("POST", "/api/events", {"X-Fields": "id{"}, EVENT),
    ("POST", "/api/events/", {"Idempotency-Key": "lean-1", "X-Fields": "message"}, EVENT),
    ("POST", "/api/events/", {"Idempotency-Key": " bad key "}, EVENT),
    ("POST", "/api/events/", {}, {**EVENT, "component": ""}),
    ("POST", "/api/events/", {}, [EVENT]),
    ("POST", "/api/events/", {"Content-Type": "text/plain"}, "not json"),
]


@pytest.mark.parametrize(("method", "url", "headers", "body"), REQUESTS)
async def test_lean_routes_answer_exactly_as_the_fastapi_routes(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    method: str,
    url: str,
    headers: dict[str, str],
    body: object,
) -> None:
    for message in ("hello", "world"):
        await client.post(
            "/api/events/", json=valid_event(component="lean", environment="prod", message=message)
        )
    fastapi_only = app_sharing_services(app, settings)
    fastapi_only.router.routes[:] = [
        route
        for route in fastapi_only.router.routes
        if getattr(getattr(route, "endpoint", None), "__name__", "") not in ("lean_list", "lean_record")
    ]
    assert len(fastapi_only.router.routes) == len(app.router.routes) - 4
    content = body if isinstance(body, str) else None
    json_body = None if isinstance(body, str) else body
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fastapi_only), base_url="http://testserver"
    ) as plain:
        expected = await plain.request(
            method, url, headers=_keyed(headers, "a"), json=json_body, content=content
        )
    answered = await client.request(
        method, url, headers=_keyed(headers, "b"), json=json_body, content=content
    )
    if method == "POST":
        # Each door records its own event: compare everything but what differs per event.
        assert answered.status_code == expected.status_code
        assert _without_identity(answered) == _without_identity(expected)
    else:
        assert (answered.status_code, answered.content) == (expected.status_code, expected.content)
    for header in ("content-type", "allow", "idempotent-replayed"):
        assert answered.headers.get(header) == expected.headers.get(header), header


def _without_identity(response: httpx.Response) -> object:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return response.content
    body = response.json()
    if isinstance(body, dict):
        body.pop("id", None)
        body.pop("created_at", None)
    return body


def _keyed(headers: dict[str, str], door: str) -> dict[str, str]:
    """Each door its own Idempotency-Key (a shared one would make the second answer a replay)."""
    key = headers.get("Idempotency-Key")
    return headers if key is None else {**headers, "Idempotency-Key": f"{key}{door}"}
