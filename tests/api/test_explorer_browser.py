"""The explorer page at / in headless Chromium against a real uvicorn: it works offline, filters,
pages, tails, shows exact JSON, carries an API key, and charts eventStats."""

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from api.explorer import CONTENT_SECURITY_POLICY, EXPLORER_PATH
from tests.support import CHROMIUM_ARGS, ROOT, browser_env, running_service, service_env, valid_event

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Neither "localhost" nor "127.0.0.1": the page must work under whatever name the service is reached
# by. This name resolves to the loopback address (any port); every other name fails to resolve.
EXPLORER_HOST = "activity-explorer.test"
IN_BROWSER_SCHEMES = ("data:", "blob:")
BIG = 123456789012345678901234567890  # far beyond 2**53: a float would print 1.2345678901234568e+29
SCHEMA = ROOT / "graphql_schema" / "schema.graphql"
HAS_EVENT_STATS = "eventStats(" in SCHEMA.read_text()


@pytest.fixture
async def browser(chromium_path: Path, tmp_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path),
            env=browser_env(tmp_path / "home"),
            args=[
                *CHROMIUM_ARGS,
                f"--host-resolver-rules=MAP {EXPLORER_HOST} 127.0.0.1, MAP * ~NOTFOUND",
            ],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


class Explorer:
    """One browser page on the explorer, recording every URL it asks for (and blocking foreign ones)."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.requested: list[str] = []
        self.blocked: list[str] = []
        self.console_errors: list[str] = []
        self.graphql_headers: list[dict[str, str]] = []

    def ours(self, url: str) -> bool:
        if url.startswith(IN_BROWSER_SCHEMES):
            return True
        target, service = urlsplit(url), urlsplit(self.origin)
        return target.scheme in ("http", "ws") and target.netloc == service.netloc

    def rows(self, body: str = "#page-rows") -> Any:
        return self.page.locator(f"{body} tr[data-id]")

    async def apply(self, **fields: str) -> None:
        """Fill the filter form (field name -> text) and apply it."""
        for name, text in fields.items():
            await self.page.locator(f"#filter-fields [name='{name}']").fill(text)
        await self.page.locator("#apply-filter").click()


async def open_explorer(browser: Browser, base_url: str) -> Explorer:
    """A fresh page on / with its filter form built (from the schema) and the first page loaded."""
    origin = f"http://{EXPLORER_HOST}:{urlsplit(base_url).port}"
    page = await browser.new_page(viewport={"width": 1300, "height": 900})
    explorer = Explorer(page, origin)

    async def guard(route: Route) -> None:
        if explorer.ours(route.request.url):
            await route.continue_()
        else:
            explorer.blocked.append(route.request.url)
            await route.abort()

    await page.route("**/*", guard)
    page.on("request", lambda request: explorer.requested.append(request.url))
    page.on("websocket", lambda websocket: explorer.requested.append(websocket.url))
    page.on(
        "console", lambda message: message.type == "error" and explorer.console_errors.append(message.text)
    )
    page.on(
        "request",
        lambda request: (
            request.url.endswith("/graphql")
            and request.method == "POST"
            and explorer.graphql_headers.append(request.headers)
        ),
    )
    response = await page.goto(f"{origin}{EXPLORER_PATH}")
    assert response is not None and response.status == 200
    await expect(page.locator("#filter-fields [name='component']")).to_be_visible(timeout=30_000)
    await page.wait_for_load_state("networkidle")
    return explorer


async def record(base_url: str, api_key: str | None = None, **overrides: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.post("/api/events/", json=valid_event(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def graphql(base_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.post("/graphql", json={"query": query, "variables": variables or {}})
    return response.json()


async def event_filter_fields(base_url: str) -> dict[str, str]:
    """EventFilter's fields as the running server describes them: name -> innermost type name."""
    type_ref = "type { name ofType { name ofType { name } } }"
    query = f'{{ __type(name: "EventFilter") {{ inputFields {{ name {type_ref} }} }} }}'
    answer = await graphql(base_url, query)

    def innermost(type_ref: dict[str, Any]) -> str:
        while type_ref.get("ofType"):
            type_ref = type_ref["ofType"]
        return type_ref["name"]

    return {field["name"]: innermost(field["type"]) for field in answer["data"]["__type"]["inputFields"]}


async def test_the_page_loads_with_a_form_for_every_filter_and_nothing_leaving_the_machine(
    live_server: str, browser: Browser
) -> None:
    await record(live_server, message="the only event")
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        page_response = await http.get(EXPLORER_PATH)
        openapi = (await http.get("/api/openapi.json")).json()
    assert page_response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "<script>" not in page_response.text  # no inline script: the CSP would block it
    assert EXPLORER_PATH not in openapi["paths"]

    explorer = await open_explorer(browser, live_server)
    page = explorer.page

    await expect(explorer.rows()).to_have_count(1)
    await expect(explorer.rows()).to_contain_text("the only event")
    # One control per EventFilter field of the server's schema, of the kind its type calls for.
    fields = await event_filter_fields(live_server)
    controls = page.locator("#filter-fields [name]")
    assert sorted(await controls.evaluate_all("cs => cs.map(c => c.name)")) == sorted(fields)
    kinds = {"DateTime": "datetime-local", "JSON": "textarea", "String": "text"}
    for name, type_name in fields.items():
        control = page.locator(f"#filter-fields [name='{name}']")
        shape = await control.evaluate("c => c.tagName === 'TEXTAREA' ? 'textarea' : c.type")
        assert shape == kinds.get(type_name, shape), (name, type_name, shape)
    assert await page.locator("[name='componentIn']").get_attribute("placeholder") == "comma-separated"

    assert explorer.blocked == []
    assert [url for url in explorer.requested if not explorer.ours(url)] == []
    assert f"{explorer.origin}/explorer/explorer.js" in explorer.requested
    assert explorer.console_errors == []  # a CSP violation or a script error would show here


async def test_the_filter_narrows_the_table_and_the_graphiql_link_carries_it(
    live_server: str, browser: Browser
) -> None:
    await record(live_server, component="order", message="order one")
    await record(live_server, component="order", message="order two")
    await record(live_server, component="billing", environment="production", message="billing prod")
    await record(live_server, component="billing", environment="staging", message="billing staging")
    await record(live_server, component="billing", data={"tier": "gold"}, message="billing gold")
    explorer = await open_explorer(browser, live_server)
    messages = explorer.rows().locator("td:nth-child(5)")
    await expect(explorer.rows()).to_have_count(5)

    await explorer.apply(component="billing")
    await expect(messages).to_have_text(["billing gold", "billing staging", "billing prod"])
    await expect(explorer.page.locator("#total-count")).to_have_text("(3 matching)")

    await explorer.apply(environmentIn="staging, test")
    await expect(messages).to_have_text(["billing staging"])

    await explorer.apply(environmentIn="", dataContains='{"tier": "gold"}')
    await expect(messages).to_have_text(["billing gold"])

    # GraphiQL's page reads ?q= and ?variables= with decodeURIComponent (so no "+" for a space).
    href = await explorer.page.locator("#graphiql-link").get_attribute("href")
    assert href is not None and href.startswith("/graphql?")
    parameters = {key: unquote(value) for key, value in (p.split("=", 1) for p in href[9:].split("&"))}
    assert "events(filter: $filter" in parameters["q"]
    variables = json.loads(parameters["variables"])
    assert variables["filter"] == {"component": "billing", "dataContains": {"tier": "gold"}}
    answer = await graphql(live_server, parameters["q"], variables)
    assert [edge["node"]["message"] for edge in answer["data"]["events"]["edges"]] == ["billing gold"]


async def test_pages_forward_and_back_with_cursors(live_server: str, browser: Browser) -> None:
    for number in range(1, 8):
        await record(live_server, message=f"event {number}")
    explorer = await open_explorer(browser, live_server)
    page = explorer.page
    messages = explorer.rows().locator("td:nth-child(5)")
    previous, following = page.locator("#previous-page"), page.locator("#next-page")

    await page.locator("#page-size").fill("3")
    await explorer.apply()
    await expect(messages).to_have_text(["event 7", "event 6", "event 5"])
    await expect(previous).to_be_disabled()

    await following.click()
    await expect(messages).to_have_text(["event 4", "event 3", "event 2"])
    await following.click()
    await expect(messages).to_have_text(["event 1"])
    await expect(following).to_be_disabled()

    await previous.click()
    await expect(messages).to_have_text(["event 4", "event 3", "event 2"])
    await previous.click()
    await expect(messages).to_have_text(["event 7", "event 6", "event 5"])
    await expect(previous).to_be_disabled()
    await expect(following).to_be_enabled()


async def wait_for_live_event(
    explorer: Explorer, post: Callable[[], Any], attempts: int = 20
) -> dict[str, Any]:
    """Record events until one reaches the live rows (the server registers the subscription a
    moment after the browser sends it); returns the event that arrived."""
    for _attempt in range(attempts):
        event = await post()
        try:
            await expect(explorer.page.locator(f"#live-rows tr[data-id='{event['id']}']")).to_have_count(
                1, timeout=1_000
            )
            return event
        except AssertionError:
            continue
    pytest.fail(f"no recorded event reached the live tail in {attempts} attempts")


async def test_live_tail_shows_matching_events_as_they_are_recorded(
    live_server: str, browser: Browser
) -> None:
    explorer = await open_explorer(browser, live_server)
    page = explorer.page
    await explorer.apply(environment="production")
    await page.locator("#live-toggle").check()
    await expect(page.locator("#live-status")).to_contain_text("live", timeout=10_000)
    websocket_urls = [url for url in explorer.requested if url.startswith("ws")]
    assert websocket_urls == [f"ws://{urlsplit(explorer.origin).netloc}/graphql"]

    await wait_for_live_event(explorer, lambda: record(live_server, message="warming up"))
    # Delivered in commit order: had the staging event matched, it would show before the next one.
    await record(live_server, environment="staging", message="not for this filter")
    latest = await record(live_server, message="live and big", data={"n": BIG})
    live_row = page.locator(f"#live-rows tr[data-id='{latest['id']}']")
    await expect(live_row).to_contain_text("live and big", timeout=10_000)
    await expect(page.locator("#live-rows")).not_to_contain_text("not for this filter")

    await live_row.click()  # a live event's JSON came over the websocket: its digits must survive too
    await expect(page.locator("#event-json")).to_contain_text(f'"n": {BIG}')

    await page.locator("#live-toggle").uncheck()
    await expect(page.locator("#live-status")).to_have_text("")
    quiet = await record(live_server, message="after the tail stopped")
    await page.wait_for_timeout(1_000)
    await expect(page.locator(f"#live-rows tr[data-id='{quiet['id']}']")).to_have_count(0)


async def test_clicking_a_row_shows_its_exact_json_with_big_integers_intact(
    live_server: str, browser: Browser
) -> None:
    data = {"big": BIG, "negative": -BIG, "nested": {"list": [1, 2.5, "x"], "ok": True, "none": None}}
    created = await record(live_server, message="with a big number", data=data)
    explorer = await open_explorer(browser, live_server)

    await explorer.rows().filter(has_text="with a big number").click()
    shown = await explorer.page.locator("#event-json").inner_text()

    assert f'"big": {BIG}' in shown
    event = json.loads(shown)  # Python's json keeps every digit: compare values exactly
    assert event["data"] == data
    assert event["id"] == created["id"]
    assert event["message"] == "with a big number"


async def test_the_api_key_field_works_against_a_server_requiring_keys(
    database_url: str, keys: dict[str, str], browser: Browser
) -> None:
    env = service_env(DATABASE_URL=database_url, AUTH_REQUIRED="true", API_KEY_CACHE_S="0")
    with running_service(env) as (base_url, _process):
        await record(base_url, keys["write"], message="behind a key")
        explorer = await open_explorer(browser, base_url)
        page = explorer.page
        # Introspection is open (so the form is there); the events are not.
        await expect(page.locator("#status")).to_contain_text("UNAUTHENTICATED")
        await expect(explorer.rows()).to_have_count(0)
        await page.locator("#live-toggle").check()
        await expect(page.locator("#live-status")).to_contain_text("UNAUTHENTICATED", timeout=10_000)

        await page.locator("#api-key").fill(keys["read"])
        await page.get_by_role("button", name="Use key").click()
        await expect(explorer.rows()).to_contain_text("behind a key")
        await expect(page.locator("#status")).to_have_text("")
        assert explorer.graphql_headers[-1].get("authorization") == f"Bearer {keys['read']}"

        # Kept for the tab's session: a reload still has it, and uses it.
        await page.reload()
        await expect(page.locator("#api-key")).to_have_value(keys["read"])
        await expect(explorer.rows()).to_contain_text("behind a key", timeout=30_000)

        # The websocket carries it in connection_init.
        await page.locator("#live-toggle").check()
        await expect(page.locator("#live-status")).to_contain_text("live", timeout=10_000)
        await wait_for_live_event(
            explorer, lambda: record(base_url, keys["write"], message="live behind a key")
        )
        assert explorer.blocked == []


async def insert_at(database_url: str, moments: list[datetime]) -> None:
    """Events stamped at `moments` (the API stamps `now`; a chart over days needs the past)."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.executemany(
            "INSERT INTO events (component, environment, email, message, data, created_at) "
            "VALUES ('order', 'production', 'a@b.co', 'seeded', '{}', $1)",
            [(moment,) for moment in moments],
        )
    finally:
        await connection.close()


@pytest.mark.skipif(not HAS_EVENT_STATS, reason=f"eventStats is not in {SCHEMA.name}: nothing to chart")
async def test_the_chart_draws_one_bar_per_bucket_with_events(
    live_server: str, database_url: str, browser: Browser, tmp_path: Path
) -> None:
    # Three days with events (3, 2 and 1) across six days: DAY buckets (HOUR would be 120+ bars).
    hours = [(1, 9), (1, 10), (1, 23), (3, 0), (3, 12), (6, 8)]
    await insert_at(database_url, [datetime(2026, 1, day, hour, tzinfo=UTC) for day, hour in hours])
    explorer = await open_explorer(browser, live_server)
    page = explorer.page
    bars = page.locator("#chart svg rect.bar")

    await expect(bars).to_have_count(3, timeout=10_000)
    await expect(page.locator("#chart-bucket")).to_have_text("(per day, UTC)")
    counts = await bars.evaluate_all("bars => bars.map(b => [b.dataset.bucket, Number(b.dataset.count)])")
    assert [(bucket[:10], count) for bucket, count in counts] == [
        ("2026-01-01", 3),
        ("2026-01-03", 2),
        ("2026-01-06", 1),
    ]
    heights = await bars.evaluate_all("bars => bars.map(b => Number(b.getAttribute('height')))")
    assert heights[0] > heights[1] > heights[2] > 0
    await explorer.rows().first.click()
    # Kept in this test's tmp folder (pytest keeps the last three runs') for a look at the page.
    await page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)

    # The chart follows the filter: one day in range, HOUR buckets, one bar per hour with events.
    await explorer.apply(**{"from": "2026-01-01T00:00", "to": "2026-01-02T00:00"})
    await expect(page.locator("#chart-bucket")).to_have_text("(per hour, UTC)")
    await expect(bars).to_have_count(3)
    assert explorer.console_errors == []


async def test_the_chart_says_so_when_its_query_fails(live_server: str, browser: Browser) -> None:
    await record(live_server)
    explorer = await open_explorer(browser, live_server)
    # A filter the server refuses (a JSON list where an object is required) fails every query.
    await explorer.apply(dataContains="[1, 2]")
    message = explorer.page.locator("#chart-message")
    await expect(message).to_contain_text("could not be loaded" if HAS_EVENT_STATS else "no eventStats")
    await expect(explorer.page.locator("#chart svg")).to_have_count(0)
