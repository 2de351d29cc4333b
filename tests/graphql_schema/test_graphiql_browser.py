"""GraphiQL in headless Chromium against a real uvicorn: it renders, runs a query, stays on our origin."""

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from graphql_schema.graphiql import STATIC_URL
from graphql_schema.graphiql_assets import FETCH_COMMAND, PINNED
from tests.support import CHROMIUM_ARGS, browser_env, valid_event

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Data and blob URLs never leave the browser (GraphiQL's CSS inlines its fonts as data: URLs).
IN_BROWSER_SCHEMES = ("data:", "blob:")


@pytest.fixture(scope="session")
def graphiql_assets_fetched(graphiql_files: str | None, live_server: str) -> None:
    """The pinned files, fetched before the live server started (conftest) and served by it."""
    if graphiql_files is not None:
        pytest.skip(
            f"GRAPHIQL BROWSER TEST SKIPPED: the GraphiQL files could not be fetched ({graphiql_files}); "
            f"run `{FETCH_COMMAND}` with npm online."
        )
    # A server that cannot serve them shows only "Loading...": say so now rather than after a 30 s timeout.
    probe = f"{live_server}{STATIC_URL}/{PINNED[0].relative_path}"
    status = httpx.get(probe, timeout=10).status_code
    if status != 200:
        pytest.fail(f"the live server answers {status} for {probe} (started before the files were fetched?)")


@pytest.fixture
async def browser(chromium_path: Path, tmp_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path), args=list(CHROMIUM_ARGS), env=browser_env(tmp_path / "home")
        )
        try:
            yield chromium
        finally:
            await chromium.close()


def same_origin(url: str, base_url: str) -> bool:
    """True for http(s)/ws(s) URLs on the service's own host and port."""
    if url.startswith(IN_BROWSER_SCHEMES):
        return True
    target, service = urlsplit(url), urlsplit(base_url)
    return target.scheme in ("http", "https", "ws", "wss") and target.netloc == service.netloc


async def record_event(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.post("/api/events/", json=valid_event(message="seen in GraphiQL"))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def open_graphiql(browser: Browser, base_url: str, query: str | None = None) -> tuple[Page, list[str]]:
    """A fresh page on /graphql (editor holding `query`, else the default); fills a list of requested URLs."""
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda websocket: requested.append(websocket.url))
    # Strawberry's page opens on the query in ?q= when there is one.
    response = await page.goto(f"{base_url}/graphql" + (f"?q={quote(query)}" if query else ""))
    assert response is not None and response.status == 200
    first_line = (query or "query RecentEvents").splitlines()[0]
    await expect(page.locator(".graphiql-query-editor .CodeMirror")).to_contain_text(
        first_line, timeout=30_000
    )
    return page, requested


async def test_graphiql_runs_the_example_query_with_every_request_on_our_origin(
    graphiql_assets_fetched: None, chromium_path: Path, live_server: str, browser: Browser, tmp_path: Path
) -> None:
    event_id = await record_event(live_server)
    page, requested = await open_graphiql(browser, live_server)

    await page.locator(".graphiql-execute-button").click()

    response_pane = page.locator(".graphiql-response")
    await expect(response_pane).to_contain_text(event_id, timeout=30_000)
    await expect(response_pane).to_contain_text('"totalCount": 1')
    # Kept in this test's tmp folder (pytest keeps the last three runs') for a look at the rendered page.
    await page.screenshot(path=str(tmp_path / "graphiql.png"))
    assert f"{live_server}{STATIC_URL}/graphiql@3.8.3/graphiql.min.js" in requested, requested
    assert [url for url in requested if not same_origin(url, live_server)] == []


async def test_graphiql_subscription_receives_an_event_over_our_websocket(
    graphiql_assets_fetched: None, chromium_path: Path, live_server: str, browser: Browser
) -> None:
    subscription = 'subscription Live { eventRecorded(filter: {environment: "production"}) { id message } }'
    page, requested = await open_graphiql(browser, live_server, subscription)
    async with page.expect_websocket() as websocket_info:
        await page.locator(".graphiql-execute-button").click()
    websocket = await websocket_info.value
    assert urlsplit(websocket.url).scheme == "ws"

    # The server registers the subscription a moment after the browser sends it: record events until
    # one arrives, then every later one must too (the pane shows the latest).
    response_pane = page.locator(".graphiql-response")
    for _attempt in range(20):
        event_id = await record_event(live_server)
        try:
            await expect(response_pane).to_contain_text(event_id, timeout=1_000)
            break
        except AssertionError:
            continue
    else:
        pytest.fail("no recorded event reached GraphiQL's subscription in 20 attempts")
    event_id = await record_event(live_server)
    await expect(response_pane).to_contain_text(event_id, timeout=10_000)
    assert [url for url in requested if not same_origin(url, live_server)] == []
