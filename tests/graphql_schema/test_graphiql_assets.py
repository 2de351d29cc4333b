"""GraphiQL's local files: pinned to Strawberry's page, verified, tamper-evident, the only ones loaded."""

import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from graphql import build_schema, parse, validate
from strawberry.http.ides import get_graphql_ide_html

from graphql_schema import graphiql, graphiql_assets
from graphql_schema.graphiql import (
    EXAMPLE_QUERY,
    STATIC_URL,
    build_graphiql_html,
    graphiql_html,
    mount_graphiql_assets,
    with_default_query,
)
from graphql_schema.graphiql_assets import (
    FETCH_COMMAND,
    PINNED,
    VENDOR_DIR,
    FetchError,
    asset_problems,
    fetch_assets,
    local_assets_available,
    sha384_base64,
)
from graphql_schema.schema import schema

TAG = re.compile(r"<(?:script|link)\s[^>]*>")
URL_ATTRIBUTE = re.compile(r'(?:src|href)="([^"]*)"')
INTEGRITY = re.compile(r'integrity="sha384-([^"]+)"')
JS_DEFAULT_QUERY = re.compile(r'const EXAMPLE_QUERY = ("(?:[^"\\]|\\.)*");')


def ensure_fetched() -> None:
    """Fetch the pinned files (a no-op when present); skip, saying why, when that is impossible here."""
    try:
        fetch_assets()
    except FetchError as error:
        pytest.skip(f"GRAPHIQL ASSETS UNAVAILABLE, test not run: {error}. Run `{FETCH_COMMAND}` online.")


@pytest.fixture(scope="module")
def fetched() -> None:
    ensure_fetched()


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Each test sees the files and the page as they are now, and leaves no cached page behind."""
    local_assets_available.cache_clear()
    graphiql_html.cache_clear()
    yield
    local_assets_available.cache_clear()
    graphiql_html.cache_clear()


def external_tags(page: str) -> dict[str, str]:
    """Absolute http(s) URL -> integrity hash, for each <script>/<link> loading one."""
    tags = {}
    for tag in TAG.findall(page):
        url = URL_ATTRIBUTE.search(tag)
        if url and url.group(1).startswith(("http://", "https://")):
            integrity = INTEGRITY.search(tag)
            tags[url.group(1)] = integrity.group(1) if integrity else ""
    return tags


def test_pins_are_exactly_the_files_strawberrys_graphiql_page_loads() -> None:
    loaded = external_tags(get_graphql_ide_html("graphiql"))
    pinned = {asset.relative_path: asset.sha384 for asset in PINNED}
    assert {url.split("/", 3)[3]: integrity for url, integrity in loaded.items()} == pinned


def test_fetched_files_match_their_pinned_sha384(fetched: None) -> None:
    assert asset_problems() == {}
    assert local_assets_available()


def test_tampered_or_missing_file_is_detected(fetched: None, tmp_path: Path) -> None:
    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR_DIR, copy)
    assert asset_problems(copy) == {}
    script = copy / "graphiql@3.8.3" / "graphiql.min.js"
    script.write_bytes(script.read_bytes().replace(b"GraphiQL", b"GraphiQl", 1))
    (copy / "react@18.2.0" / "umd" / "react.production.min.js").unlink()

    assert asset_problems(copy) == {
        "graphiql@3.8.3/graphiql.min.js": "sha384 mismatch",
        "react@18.2.0/umd/react.production.min.js": "missing",
    }


def test_fetch_with_files_present_needs_no_npm(
    fetched: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR_DIR, copy)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    fetch_assets(copy)

    assert asset_problems(copy) == {}


@pytest.mark.slow  # fetches from the npm registry (the full run's job)
def test_fetch_needs_python_alone_not_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no node, no npm
    fetch_assets(tmp_path / "vendor")
    assert asset_problems(tmp_path / "vendor") == {}


def test_an_unreachable_registry_is_a_fetch_error_and_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The registry npm would use is the one we use: here one where nothing listens.
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    with pytest.raises(FetchError, match=r"cannot download http://127\.0\.0\.1:9/"):
        fetch_assets(tmp_path / "vendor")
    assert not (tmp_path / "vendor").exists()


def test_fetch_command_exits_0_with_a_warning_when_offline(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def offline() -> None:
        raise FetchError("cannot download the packages (offline?)")

    monkeypatch.setattr(graphiql_assets, "fetch_assets", offline)
    with caplog.at_level(logging.WARNING, logger=graphiql_assets.__name__):
        assert graphiql_assets.main(["fetch"]) == 0
    assert "offline" in caplog.text
    assert FETCH_COMMAND in caplog.text


def test_page_loads_only_local_files_and_opens_on_the_example_query(fetched: None) -> None:
    page = graphiql_html()

    urls = [url for tag in TAG.findall(page) for url in URL_ATTRIBUTE.findall(tag)]
    assert sorted(urls) == sorted(f"{STATIC_URL}/{asset.relative_path}" for asset in PINNED)
    assert sorted(INTEGRITY.findall(page)) == sorted(asset.sha384 for asset in PINNED)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
    default_query = JS_DEFAULT_QUERY.search(page)
    assert default_query is not None
    assert json.loads(default_query.group(1)) == EXAMPLE_QUERY
    assert "query RecentEvents" in EXAMPLE_QUERY


def test_page_without_local_files_is_strawberrys_cdn_page_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = {"graphiql@3.8.3/graphiql.min.js": "missing"}
    monkeypatch.setattr(graphiql, "local_assets_available", lambda: False)
    monkeypatch.setattr(graphiql, "asset_problems", lambda: missing)

    with caplog.at_level(logging.WARNING, logger=graphiql.__name__):
        first, second = graphiql_html(), graphiql_html()

    assert first == second == with_default_query(get_graphql_ide_html("graphiql"))
    assert external_tags(first) == external_tags(get_graphql_ide_html("graphiql"))
    assert "query RecentEvents" in first
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "graphiql@3.8.3/graphiql.min.js (missing)" in warnings[0]
    assert FETCH_COMMAND in warnings[0]


def test_example_query_is_valid_against_our_schema() -> None:
    assert validate(build_schema(str(schema)), parse(EXAMPLE_QUERY)) == []


def test_default_query_survives_characters_that_could_end_the_script() -> None:
    page = with_default_query(get_graphql_ide_html("graphiql"), 'query Q { e(m: "</script>`${x}") }')
    default_query = JS_DEFAULT_QUERY.search(page)
    assert default_query is not None
    assert "</script>`" not in default_query.group(0)
    assert json.loads(default_query.group(1)) == 'query Q { e(m: "</script>`${x}") }'
    assert build_graphiql_html(local_assets=False).count("const EXAMPLE_QUERY") == 1


async def test_mounted_folder_serves_the_verified_bytes(fetched: None) -> None:
    app = FastAPI()
    mount_graphiql_assets(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for asset in PINNED:
            response = await http.get(f"{STATIC_URL}/{asset.relative_path}")
            assert response.status_code == 200, asset.relative_path
            assert sha384_base64(response.content) == asset.sha384
