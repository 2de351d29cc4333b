"""The GraphQL schema: types, guards against abusive queries, and error masking.

`python -m graphql_schema.export_schema` writes it to schema.graphql (a test keeps them equal).
"""

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.types import ExecutionContext

from api.settings import Settings
from graphql_schema.errors import client_error, log_server_errors
from graphql_schema.mutations import Mutation
from graphql_schema.queries import Query

try:
    # Written separately; the schema works (without subscriptions) until it exists.
    from graphql_schema.subscription import Subscription
except ModuleNotFoundError as missing:
    # Only the module's absence is tolerated: a broken import inside it must fail loudly.
    if missing.name != "graphql_schema.subscription":
        raise
    Subscription = None  # type: ignore[assignment,misc]


# Distinct query documents kept parsed and validated (bounded: a flood of unique queries only
# churns the cache).
PARSED_DOCUMENTS_CACHED = 256


class ClientSafeErrors(MaskErrors):
    """Every error goes through the one GraphQL error mapping (graphql_schema.errors.client_error)."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _error: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return client_error(error)


class EventsSchema(strawberry.Schema):
    """Strawberry's schema, logging only server-side failures (not every client mistake)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_server_errors(errors)


def build_schema(settings: Settings) -> EventsSchema:
    """The schema with the query-shape guards `settings` asks for."""
    # The guard rules are built once, not per request: ValidationCache keys its entries on the
    # rule classes, so fresh classes per request would make every lookup a miss.
    guard_rules = [
        depth_rule(settings.graphql_max_depth, None),
        alias_rule(settings.graphql_max_aliases),
    ]
    return EventsSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Factories, not instances: each operation gets fresh extensions (they hold state).
        extensions=[
            lambda: AddValidationRules(guard_rules),
            lambda: MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
            # Clients send the same few documents over and over: parse and validate each once.
            lambda: ParserCache(maxsize=PARSED_DOCUMENTS_CACHED),
            lambda: ValidationCache(maxsize=PARSED_DOCUMENTS_CACHED),
            ClientSafeErrors,
        ],
    )


# With the default guards: what export_schema writes (the guards do not show in the SDL).
schema = build_schema(Settings(_env_file=None))  # type: ignore[call-arg]
