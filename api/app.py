"""The application factory: the two doors (REST, GraphQL) assembled onto one FastAPI app."""

import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.explorer import mount_explorer
from api.lifespan import lifespan
from api.metrics import metrics_router, service_metrics
from api.middleware import (
    BodySizeLimitMiddleware,
    ControlCharacterPathMiddleware,
    HeaderSizeLimitMiddleware,
    RequestLogMiddleware,
    RequestMetricsMiddleware,
)
from api.settings import Settings
from api.telemetry import install_tracing
from graphql_schema.graphiql import mount_graphiql_assets
from graphql_schema.router import GRAPHQL_PATH, graphql_router
from rest import batch, docs, events, export, health, stats
from rest.errors import STATUS_MESSAGES, install_error_handlers


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; nothing connects until the lifespan starts."""
    app = FastAPI(
        title="activity-service",
        summary="An event log for applications.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=docs.OPENAPI_PATH,
    )
    settings = settings or Settings()
    app.state.settings = settings
    install_error_handlers(app)
    # Added innermost first: the request log wraps everything, so even a 413 gets its line and id.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Fields", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(
        ControlCharacterPathMiddleware, not_found_body=orjson.dumps({"message": STATUS_MESSAGES[404]})
    )
    app.add_middleware(HeaderSizeLimitMiddleware, max_bytes=settings.max_request_header_bytes)
    app.add_middleware(
        RequestMetricsMiddleware, metrics=service_metrics(), routes=app, graphql_path=GRAPHQL_PATH
    )
    app.add_middleware(RequestLogMiddleware)
    app.include_router(health.router)
    app.include_router(export.router)  # before /api/events/{event_id}, which would take `export`
    app.include_router(stats.router)  # likewise before /api/events/{event_id}
    app.include_router(events.router)
    app.include_router(batch.router)
    graphql = graphql_router(settings)
    app.include_router(graphql)
    app.router.routes.insert(0, graphql.post_route())  # matched first: the lean path for operations
    app.router.routes[0:0] = events.lean_routes()  # likewise for the legacy list and record
    app.include_router(metrics_router(settings))
    docs.mount_docs(app)
    mount_graphiql_assets(app)
    mount_explorer(app)  # GET / and /explorer/*: the browser page
    install_tracing(app, settings)
    return app
