"""Interactive API docs that render with no internet: Swagger UI assets from the fastapi-offline package."""

from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from rest.openapi_document import install_openapi_document
from rest.responses import json_response

DOCS_PATH = "/api/docs"
ASSETS_PATH = "/api/docs/assets"
OPENAPI_PATH = "/api/openapi.json"
# Swagger UI 5, which reads the OpenAPI 3.1 documents FastAPI writes (swagger-ui-bundle's 4.15
# answered them with "Unable to render this definition").
SWAGGER_UI_ASSETS = files("fastapi_offline") / "static"

router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH)
async def docs_page() -> HTMLResponse:
    """Swagger UI for the REST API, its assets served by this service."""
    return get_swagger_ui_html(
        openapi_url=OPENAPI_PATH,
        title="activity-service REST API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
    )


@router.get("/api/")
@router.get("/api", include_in_schema=False)
async def api_root() -> RedirectResponse:
    """The original served its docs at /api/; they live at /api/docs now."""
    return RedirectResponse(DOCS_PATH, status_code=302)


@router.get("/api/swagger.json")
async def swagger_json(request: Request) -> Response:
    """The original's spec URL, kept: it now holds the OpenAPI 3 document."""
    return json_response(request.app.openapi())


def mount_docs(app: FastAPI) -> None:
    """Add the docs routes, the static Swagger UI assets and the corrected OpenAPI document to `app`."""
    install_openapi_document(app)
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=str(SWAGGER_UI_ASSETS)), name="swagger-ui-assets")
