"""The GraphiQL page for GET /graphql: Strawberry's own page, its files served by this service when present.

Strawberry's template is read from the installed package at run time (never copied here). When the pinned
files in graphql_schema/static/vendor/ verify, its CDN URLs are pointed at STATIC_URL (integrity attributes
kept, so the browser checks them again); otherwise the page is Strawberry's CDN page, and the log says why.
Either way the editor opens on EXAMPLE_QUERY, and subscriptions go over Strawberry's websocket fetcher.
"""

import functools
import json
import logging
import re

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from strawberry.http.ides import get_graphql_ide_html

from graphql_schema.graphiql_assets import (
    FETCH_COMMAND,
    PINNED,
    VENDOR_DIR,
    Asset,
    asset_problems,
    local_assets_available,
)

logger = logging.getLogger(__name__)

STATIC_URL = "/graphql/static"

EXAMPLE_QUERY = """\
# Recent production events: press Ctrl-Enter or ▶.
# Subscriptions run here too, over a websocket.
query RecentEvents {
  events(first: 10, filter: { environment: "production" }) {
    totalCount
    edges {
      cursor
      node {
        id
        component
        environment
        email
        message
        data
        createdAt
        actor {
          email
          eventCount
        }
      }
    }
    pageInfo {
      hasNextPage
      endCursor
    }
  }
}
"""

# A <script>/<link> tag that loads from an absolute http(s) URL, i.e. from somewhere other than this service.
_EXTERNAL_TAG = re.compile(r'<(?:script|link)\s[^>]*?(?:src|href)="https?://[^"]+"[^>]*>')
_EXTERNAL_URL = re.compile(r'(?P<attribute>src|href)="(?P<url>https?://[^"]+)"')
_INTEGRITY = re.compile(r'integrity="(?P<integrity>[^"]+)"')
# Strawberry's template starts the editor on this JavaScript template literal (unless the URL has ?q=).
_DEFAULT_QUERY = re.compile(r"const EXAMPLE_QUERY = `(?:[^`\\]|\\.)*`;", re.DOTALL)


class TemplateMismatch(ValueError):
    """Strawberry's page no longer has the shape this module rewrites (Strawberry was upgraded?)."""


def use_local_assets(template: str, assets: tuple[Asset, ...] = PINNED, static_url: str = STATIC_URL) -> str:
    """`template` with each pinned CDN URL replaced by its local URL; raises TemplateMismatch otherwise."""
    unused = {asset.relative_path: asset for asset in assets}

    def localize(tag_match: re.Match[str]) -> str:
        tag = tag_match.group(0)
        url_match = _EXTERNAL_URL.search(tag)
        assert url_match is not None  # _EXTERNAL_TAG only matches tags with such a URL
        url = url_match.group("url")
        asset = next((a for a in assets if url.endswith(f"/{a.relative_path}")), None)
        if asset is None:
            raise TemplateMismatch(f"the page loads {url}, which is not pinned")
        integrity = _INTEGRITY.search(tag)
        if integrity is None or integrity.group("integrity") != asset.integrity:
            raise TemplateMismatch(f"the page's integrity for {url} differs from the pin")
        unused.pop(asset.relative_path, None)
        local = f'{url_match.group("attribute")}="{static_url}/{asset.relative_path}"'
        return tag[: url_match.start()] + local + tag[url_match.end() :]

    page = _EXTERNAL_TAG.sub(localize, template)
    if unused:
        raise TemplateMismatch(f"the page no longer loads {', '.join(sorted(unused))}")
    return page


def with_default_query(template: str, query: str = EXAMPLE_QUERY) -> str:
    """`template` with the editor's initial query replaced by `query`; raises TemplateMismatch otherwise."""
    # json.dumps gives a valid JavaScript string literal; escaping "<" keeps "</script>" out of the page.
    literal = json.dumps(query, ensure_ascii=False).replace("<", "\\u003c")
    page, count = _DEFAULT_QUERY.subn(lambda _: f"const EXAMPLE_QUERY = {literal};", template, count=1)
    if count != 1:
        raise TemplateMismatch("the page no longer sets its default query as `const EXAMPLE_QUERY`")
    return page


def build_graphiql_html(local_assets: bool) -> str:
    """Strawberry's GraphiQL page with our default query, loading its files locally if `local_assets`."""
    page = get_graphql_ide_html("graphiql")
    try:
        page = with_default_query(page)
    except TemplateMismatch as error:
        logger.warning("GraphiQL opens on Strawberry's default query: %s", error)
    if not local_assets:
        return page
    try:
        return use_local_assets(page)
    except TemplateMismatch as error:
        logger.warning(
            "GraphiQL loads its files from a CDN (needs internet): %s. Update PINNED in "
            "graphql_schema/graphiql_assets.py to match Strawberry's graphiql.html, then run `%s`.",
            error,
            FETCH_COMMAND,
        )
        return page


@functools.cache
def graphiql_html() -> str:
    """The GraphiQL page for GET /graphql (built once per process; any fallback is logged once)."""
    if local_assets_available():
        return build_graphiql_html(local_assets=True)
    problems = ", ".join(f"{path} ({problem})" for path, problem in asset_problems().items())
    logger.warning(
        "GraphiQL loads its files from a CDN (needs internet); not available locally: %s. Run `%s`.",
        problems,
        FETCH_COMMAND,
    )
    return build_graphiql_html(local_assets=False)


def mount_graphiql_assets(app: FastAPI) -> None:
    """Serve the fetched GraphiQL files at STATIC_URL (when the vendor folder exists at all)."""
    if VENDOR_DIR.is_dir():
        app.mount(STATIC_URL, StaticFiles(directory=VENDOR_DIR), name="graphiql-assets")
