"""The explorer page at `/`: filter, page, chart and tail the log in a browser, with no internet.

Plain files under static/ (HTML, ES modules, CSS): no build step, no CDN. The page derives its filter
form from the schema by introspection and talks to /graphql like any other client, so it needs no
route of its own beyond these two.
"""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

EXPLORER_PATH = "/"
STATIC_URL = "/explorer"
STATIC_DIR = Path(__file__).parent / "static"

# Everything the page loads comes from this service: its own files, /graphql over HTTP and the
# websocket ('self' covers ws:/wss: to the same host in CSP level 3). No inline script or style.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

router = APIRouter(include_in_schema=False)


@router.get(EXPLORER_PATH)
async def explorer_page() -> FileResponse:
    """The explorer page (its script and styles are served under STATIC_URL)."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # The page is tiny; a stale copy after an upgrade would load stale modules.
            "Cache-Control": "no-cache",
        },
    )


def mount_explorer(app: FastAPI) -> None:
    """Serve the explorer page at EXPLORER_PATH and its files at STATIC_URL."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="explorer-assets")
