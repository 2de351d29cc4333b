"""The /graphql endpoint: GraphiQL on GET, queries on POST, subscriptions over websockets."""

import logging

from fastapi.responses import HTMLResponse
from starlette.requests import Request
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from api.settings import Settings
from graphql_schema.context import Context, get_context
from graphql_schema.schema import build_schema

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"


class EventsGraphQLRouter(GraphQLRouter[Context, None]):
    """Strawberry's router with our GraphiQL page (local assets) when it is available."""

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """Our self-hosted GraphiQL page, or Strawberry's default one when it is not installed."""
        try:
            # Imported lazily: the module is optional, and only this page needs it.
            from graphql_schema.graphiql import graphiql_html
        except ImportError:
            return await super().render_graphql_ide(request)
        return HTMLResponse(graphiql_html())


def graphql_router(settings: Settings) -> EventsGraphQLRouter:
    """A fresh router for one app (per-request context, both websocket protocols)."""
    return EventsGraphQLRouter(
        build_schema(settings),
        path=GRAPHQL_PATH,
        context_getter=get_context,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        # Browser websockets from other origins are refused unless CORS allows that origin too.
        allowed_origins=settings.cors_allowed_origins,
        # Not in the REST OpenAPI document: GraphQL describes itself (introspection, schema.graphql),
        # and FastAPI could only list it as JSON in, JSON out (GET even answers GraphiQL's HTML).
        include_in_schema=False,
    )
