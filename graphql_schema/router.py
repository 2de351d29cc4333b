"""The /graphql endpoint: GraphiQL and queries on GET, operations on POST, subscriptions over websockets."""

import logging

from fastapi.responses import HTMLResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UNSET

from api.settings import Settings
from graphql_schema import http_transport
from graphql_schema.context import Context, get_context
from graphql_schema.schema import EventsSchema, build_schema
from graphql_schema.websockets import WebsocketTransports

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"


# WebsocketTransports: both websocket protocols through the gate, with the connection caps.
class EventsGraphQLRouter(WebsocketTransports, GraphQLRouter[Context, None]):
    """Strawberry's router, with our HTTP transport and our GraphiQL page (local assets) when available."""

    def __init__(self, schema: EventsSchema, **kwargs: object) -> None:
        super().__init__(schema, **kwargs)  # type: ignore[arg-type]
        self.events_schema = schema

    async def run(  # type: ignore[override]
        self, request: Request | WebSocket, context: Context = UNSET, root_value: None = UNSET
    ) -> Response | WebSocket:
        """HTTP goes through our transport (graphql_schema.http_transport); websockets to Strawberry's."""
        if self.is_websocket_request(request):
            return await super().run(request, context, root_value)
        # Strawberry's HTTP path would skip the gate, where all authorization lives: it must never run.
        if self.should_render_graphql_ide(request):
            return await self.render_graphql_ide(request)
        return await http_transport.serve(self.events_schema, request, context)

    def should_render_graphql_ide(self, request: Request) -> bool:  # type: ignore[override]
        """A browser's GET with no query gets GraphiQL; one naming a document by hash is a GraphQL request."""
        return super().should_render_graphql_ide(request) and "extensions" not in request.query_params

    def post_route(self) -> Route:
        """`POST /graphql` as a plain Starlette route, to be matched before this router's own.

        The same transport and context; what it leaves out is FastAPI's dependency machinery in
        front of every operation, whose only work here was building the context.
        """

        async def post(request: Request) -> Response:
            context = await get_context(request)
            context.request = request
            return await http_transport.serve(self.events_schema, request, context)

        return Route(GRAPHQL_PATH, post, methods=["POST"])

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
