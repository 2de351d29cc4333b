"""The GraphQL schema: types, the caches of parsed and validated documents, and error masking.

`python -m graphql_schema.export_schema` writes it to schema.graphql (a test keeps them equal).
"""

from collections.abc import Callable, Iterator
from functools import lru_cache

import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSyntaxError,
    SelectionSetNode,
    Visitor,
    parse,
    specified_rules,
    validate,
    visit,
)
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from api.settings import Settings
from graphql_schema.errors import client_error, log_server_errors
from graphql_schema.mutations import Mutation
from graphql_schema.persisted_documents import (
    ManifestError,
    PersistedQueryStore,
    TrustedDocuments,
    sha256_hex,
)
from graphql_schema.plans import PlanCache
from graphql_schema.policy import Assessments
from graphql_schema.queries import Query
from graphql_schema.subscription import Subscription
from graphql_schema.websockets.shared_streams import SharedStreams

# Distinct query documents kept parsed and validated (bounded: a flood of unique queries only
# churns the caches).
PARSED_DOCUMENTS_CACHED = 256
# Policy assessments are per (document, operation, variables): more of them recur.
ASSESSMENTS_CACHED = 4096


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


class _EmptySelectionSets(Visitor):
    """Refuses `{}` as graphql-js does: the grammar wants one selection at least (`{ Selection+ }`).

    graphql-core 3.3 parses an empty selection set, which no rule then refuses and the depth rule
    cannot measure (it failed with a 500).
    """

    def enter_selection_set(self, node: SelectionSetNode, *_: object) -> None:
        if not node.selections and node.loc is not None:
            raise GraphQLSyntaxError(node.loc.source, node.loc.end - 1, 'Expected Name, found "}".')


class EventsSchema(strawberry.Schema):
    """Strawberry's schema with its settings, shared document caches and server-only error logging.

    It also holds where a document named by hash is found (graphql_schema.persisted_documents): the
    trusted documents when GRAPHQL_TRUSTED_DOCUMENTS is set (parsed and validated here, at start-up,
    and kept for the life of the process; one that fails stops start-up), otherwise the store of
    automatic persisted queries (None when GRAPHQL_APQ_CACHE_BYTES is 0).
    """

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        # The guard rules are built once: they run only on documents the standard rules accept
        # (the depth rule fails on an undefined fragment, which the standard rules report cleanly).
        self._guard_rules = (
            depth_rule(settings.graphql_max_depth, None),
            alias_rule(settings.graphql_max_aliases),
        )
        # Clients send the same few documents over and over: parse and validate each once. Keyed by
        # text: a document found by hash is the very string registered, so its lookup is immediate.
        self._parsed: Callable[[str], DocumentNode] = lru_cache(PARSED_DOCUMENTS_CACHED)(self._parse)
        self._validation_errors: Callable[[str], tuple[GraphQLError, ...]] = lru_cache(
            PARSED_DOCUMENTS_CACHED
        )(self._validate)
        self.plans = PlanCache(self._schema, self.parsed, PARSED_DOCUMENTS_CACHED)
        self.assessments = Assessments(ASSESSMENTS_CACHED)
        # Live subscriptions asking the same thing share one execution (None: each runs its own).
        self.shared_streams = (
            SharedStreams(settings.subscription_queue_size) if settings.graphql_shared_subscriptions else None
        )
        self.trusted_documents: TrustedDocuments | None = None
        self.persisted_queries: PersistedQueryStore | None = None
        # Trusted documents, parsed and valid, outside the bounded caches: never parsed again.
        self._pinned: dict[str, DocumentNode] = {}
        if settings.graphql_trusted_documents is not None:
            self.trusted_documents = TrustedDocuments.load(settings.graphql_trusted_documents)
            for document in self.trusted_documents:
                self._pinned[document] = self._prepare_trusted(document)
        elif settings.graphql_apq_cache_bytes > 0:
            self.persisted_queries = PersistedQueryStore(settings.graphql_apq_cache_bytes)

    def parsed(self, query: str) -> DocumentNode:
        """`query` parsed (cached); raises GraphQLSyntaxError."""
        pinned = self._pinned.get(query)
        return pinned if pinned is not None else self._parsed(query)

    def validation_errors(self, query: str) -> tuple[GraphQLError, ...]:
        """What validation finds wrong with `query` (cached); a trusted document has nothing."""
        return () if query in self._pinned else self._validation_errors(query)

    def _parse(self, query: str) -> DocumentNode:
        # The token limit bounds the work of parsing itself (and the nesting it can reach).
        document = parse(query, max_tokens=self.settings.graphql_max_tokens)
        visit(document, _EmptySelectionSets())
        return document

    def _validate(self, query: str) -> tuple[GraphQLError, ...]:
        return self._validate_document(self.parsed(query))

    def _validate_document(self, document: DocumentNode) -> tuple[GraphQLError, ...]:
        errors = validate_document(self._schema, document, tuple(specified_rules))
        if not errors:
            errors = validate(self._schema, document, self._guard_rules)
        return tuple(errors)

    def _prepare_trusted(self, text: str) -> DocumentNode:
        """A trusted document parsed and validated; a ManifestError saying why when it is not valid."""
        try:
            document = self._parse(text)
        except GraphQLSyntaxError as error:
            problem = error.message
        else:
            errors = self._validate_document(document)
            if not errors:
                return document
            problem = errors[0].message
        raise ManifestError(
            f"{self.settings.graphql_trusted_documents}: the trusted document "
            f"{sha256_hex(text)} is not valid here: {problem}"
        )

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


# With the default limits: what export_schema writes (neither the limits nor trusted documents
# show in the SDL, and importing this module reads no manifest).
schema = build_schema(Settings(_env_file=None, graphql_trusted_documents=None))  # type: ignore[call-arg]
