"""API keys: scopes enforced on every REST route when AUTH_REQUIRED is on; the CLI that manages them."""

import subprocess
import sys

import asyncpg
import httpx
import pytest

from db.api_keys import KeyVerifier
from db.engine import Database
from tests.support import ROOT, service_env, valid_event

EVENT_ID = "a785b2db-6566-4316-a435-58f8e5c6ae98"


ROUTES = [
    ("GET", "/api/events/", "events:read"),
    ("GET", "/api/events", "events:read"),
    ("GET", f"/api/events/{EVENT_ID}", "events:read"),
    ("POST", "/api/events/", "events:write"),
    ("POST", "/api/events", "events:write"),
]
GRANTS = {"read": {"events:read"}, "write": {"events:write"}, "admin": {"events:read", "events:write"}}
OK = {"GET": {200, 404}, "POST": {201}}


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
@pytest.mark.parametrize("caller", ["none", "revoked", "read", "write", "admin"])
async def test_event_routes_need_a_key_with_the_right_scope(
    auth_client: httpx.AsyncClient, keys: dict[str, str], method: str, path: str, scope: str, caller: str
) -> None:
    headers = {} if caller == "none" else {"Authorization": f"Bearer {keys[caller]}"}
    body = valid_event() if method == "POST" else None
    response = await auth_client.request(method, path, json=body, headers=headers)
    if caller in ("none", "revoked"):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    elif scope not in GRANTS[caller]:
        assert response.status_code == 403
        assert scope in response.json()["message"]
    else:
        assert response.status_code in OK[method]
    if response.status_code >= 400:
        assert isinstance(response.json()["message"], str)


async def test_the_x_api_key_header_works_too(auth_client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    response = await auth_client.post(
        "/api/events/", json=valid_event(), headers={"X-API-Key": keys["write"]}
    )
    assert response.status_code == 201


@pytest.mark.parametrize("key", ["", "nonsense", "ak_deadbeef_guess", "Bearer"])
async def test_malformed_or_unknown_keys_are_401(auth_client: httpx.AsyncClient, key: str) -> None:
    response = await auth_client.get("/api/events/", headers={"X-API-Key": key} if key else {})
    assert response.status_code == 401
    assert response.json()["message"]


@pytest.mark.parametrize(
    "path", ["/api/health", "/api/healthz", "/api/ready", "/api/docs", "/api/openapi.json"]
)
async def test_health_and_docs_stay_open(auth_client: httpx.AsyncClient, path: str) -> None:
    assert (await auth_client.get(path)).status_code == 200


async def test_a_rejected_write_stores_nothing(
    auth_client: httpx.AsyncClient, client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await auth_client.post(
        "/api/events/", json=valid_event(), headers={"Authorization": f"Bearer {keys['read']}"}
    )
    assert response.status_code == 403
    assert (await client.get("/api/events/")).json() == {"events": []}


async def test_keys_are_stored_only_as_hashes(database_url: str, keys: dict[str, str]) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        dump = str(await connection.fetch("SELECT * FROM api_keys"))
    finally:
        await connection.close()
    for raw_key in keys.values():
        assert raw_key not in dump
        assert raw_key.split("_", 2)[2] not in dump


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "keys", *args],
        cwd=ROOT,
        env=service_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
async def test_keys_cli_creates_lists_and_revokes(database_url: str, database: Database) -> None:
    created = _cli(database_url, "create", "--name", "billing", "--scope", "events:read")
    assert created.returncode == 0, created.stderr
    raw_key = created.stdout.strip()
    key_id = raw_key.split("_")[1]
    verifier = KeyVerifier(database, cache_s=0)
    assert (await verifier.authorize(raw_key, "events:read")).name == "billing"

    listed = _cli(database_url, "list")
    assert key_id in listed.stdout and "billing" in listed.stdout and "active" in listed.stdout
    assert raw_key not in listed.stdout + listed.stderr

    assert _cli(database_url, "revoke", key_id).returncode == 0
    assert "revoked" in _cli(database_url, "list").stdout
    with pytest.raises(Exception, match="not valid"):
        await verifier.authorize(raw_key, "events:read")
    again = _cli(database_url, "revoke", key_id)
    assert again.returncode == 1 and "no active key" in again.stderr


@pytest.mark.slow
def test_keys_cli_refuses_unknown_scopes(database_url: str) -> None:
    result = _cli(database_url, "create", "--name", "x", "--scope", "events:delete")
    assert result.returncode == 1
    assert "scopes must be among" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_key_whose_secret_contains_underscores_is_still_read() -> None:
    from db.api_keys import _key_id

    assert _key_id("ak_0123abcd_se_cr_et") == "0123abcd"
    assert _key_id("ak__secret") is None
    assert _key_id("xx_0123abcd_secret") is None
