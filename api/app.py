"""The application factory: the two doors (REST, GraphQL) assembled onto one FastAPI app."""

from fastapi import FastAPI

from api.lifespan import lifespan
from api.settings import Settings
from rest import docs, events, health
from rest.errors import install_error_handlers


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
    app.state.settings = settings or Settings()
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(events.router)
    docs.mount_docs(app)
    return app
