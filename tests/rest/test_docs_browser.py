"""The REST docs in headless Chromium on a real uvicorn: Swagger UI renders, nothing leaves our origin."""

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.support import CHROMIUM_ARGS, browser_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A host name that is neither "localhost" nor "127.0.0.1": Swagger UI treats those two as local and
# skips some outside requests for them, which would hide a leak a deployed service has.
DOCS_HOST = "activity-docs.test"
IN_BROWSER_SCHEMES = ("data:", "blob:")


@pytest.fixture
async def browser(live_server: str, chromium_path: Path, tmp_path: Path) -> AsyncIterator[Browser]:
    port = urlsplit(live_server).port
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path),
            env=browser_env(tmp_path / "home"),
            args=[
                *CHROMIUM_ARGS,
                # Our host name reaches the live server; every other name fails to resolve.
                f"--host-resolver-rules=MAP {DOCS_HOST}:{port} 127.0.0.1:{port}, MAP * ~NOTFOUND",
            ],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_swagger_ui_renders_the_events_api_with_every_request_on_our_origin(
    live_server: str, browser: Browser
) -> None:
    origin = f"http://{DOCS_HOST}:{urlsplit(live_server).port}"
    page = await browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    response = await page.goto(f"{origin}/api/docs")
    assert response is not None and response.status == 200
    await expect(page.locator(".opblock-summary-path", has_text="/api/events/").first).to_be_visible(
        timeout=30_000
    )
    await expect(page.locator(".information-container .title")).to_contain_text("activity-service")
    await page.wait_for_load_state("networkidle")

    ours = (*IN_BROWSER_SCHEMES, f"{origin}/")
    assert [url for url in requested if not url.startswith(ours)] == []
    assert f"{origin}/api/docs/assets/swagger-ui-bundle.js" in requested
