"""The GraphQL schema: types, the caches of parsed and validated documents, and error masking.

`python -m graphql_schema.export_schema` writes it to schema.graphql (a test keeps them equal).
"""

from collections.abc import Callable, Iterator
from functools import lru_cache

import strawberry
from graphql import DocumentNode, GraphQLError, parse, specified_rules, validate
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from api.settings import Settings
from graphql_schema.errors import client_error, log_server_errors
from graphql_schema.mutations import Mutation
from graphql_schema.queries import Query
from graphql_schema.subscription import Subscription

# Distinct query documents kept parsed and validated (bounded: a flood of unique queries only
# churns the caches).
PARSED_DOCUMENTS_CACHED = 256


class ClientSafeErrors(MaskErrors):
    """Every error goes through the one GraphQL error mapping (graphql_schema.errors.client_error)."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _error: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return client_error(error)


class AdmittedDocuments(SchemaExtension):
    """Strawberry takes the parsed document and its validation from the schema's caches.

    The gate (graphql_schema.gate) has already filled them for every operation the transports run,
    so Strawberry neither parses nor validates again.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        schema: EventsSchema = context.schema  # type: ignore[assignment]
        if context.query is not None:
            context.graphql_document = schema.parsed(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        schema: EventsSchema = context.schema  # type: ignore[assignment]
        if context.query is not None:
            context.pre_execution_errors = list(schema.validation_errors(context.query))
        yield


class EventsSchema(strawberry.Schema):
    """Strawberry's schema with its settings, shared document caches and server-only error logging."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        # The guard rules are built once: they run only on documents the standard rules accept
        # (the depth rule fails on an undefined fragment, which the standard rules report cleanly).
        self._guard_rules = (
            depth_rule(settings.graphql_max_depth, None),
            alias_rule(settings.graphql_max_aliases),
        )
        # Clients send the same few documents over and over: parse and validate each once.
        self.parsed: Callable[[str], DocumentNode] = lru_cache(PARSED_DOCUMENTS_CACHED)(self._parse)
        self.validation_errors: Callable[[str], tuple[GraphQLError, ...]] = lru_cache(
            PARSED_DOCUMENTS_CACHED
        )(self._validate)

    def _parse(self, query: str) -> DocumentNode:
        # The token limit bounds the work of parsing itself (and the nesting it can reach).
        return parse(query, max_tokens=self.settings.graphql_max_tokens)

    def _validate(self, query: str) -> tuple[GraphQLError, ...]:
        document = self.parsed(query)
        errors = validate_document(self._schema, document, tuple(specified_rules))
        if not errors:
            errors = validate(self._schema, document, self._guard_rules)
        return tuple(errors)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_server_errors(errors)


def build_schema(settings: Settings) -> EventsSchema:
    """The schema with the limits `settings` asks for."""
    return EventsSchema(
        settings,
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Factories, not instances: each operation gets fresh extensions (they hold state).
        extensions=[AdmittedDocuments, ClientSafeErrors],
    )


# With the default limits: what export_schema writes (the limits do not show in the SDL).
schema = build_schema(Settings(_env_file=None))  # type: ignore[call-arg]
