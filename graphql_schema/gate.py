"""The gate every GraphQL operation passes before anything of it runs, over HTTP and websockets alike.

A transport (graphql_schema.http_transport, graphql_schema.websockets) turns what the client
sent into an `OperationRequest` (`operation_request`), then asks `admit` whether it may run. `admit`
finds the document (sent as text, or named by hash: automatic persisted queries and trusted
documents, graphql_schema.persisted_documents), parses it, picks the operation, validates, coerces
the variables and applies the policy (cost limit and per-field authorization,
graphql_schema.policy), in that order and in this one place, so no resolver and no SQL runs for a
request that will be refused, and a document named by hash passes every step a text does. A
refusal is a `RequestRefused` carrying GraphQL errors, each with an `extensions.code`, and the HTTP
status it deserves. Only then does the transport hand the operation (as `admit` returns it, with
its document's text) to Strawberry, which finds the parsed document and its validation in the
caches this gate filled (see `AdmittedDocuments` in graphql_schema.schema).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
)
from graphql.execution.values import VariableValues, get_variable_values

from db.json_text import canonical_json
from graphql_schema import policy
from graphql_schema.errors import BAD_REQUEST, BAD_USER_INPUT, with_code
from graphql_schema.persisted_documents import sha256_hex

if TYPE_CHECKING:
    from graphql_schema.context import Context
    from graphql_schema.schema import EventsSchema

GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
OPERATION_RESOLUTION_FAILURE = "OPERATION_RESOLUTION_FAILURE"
OPERATION_NOT_SUPPORTED = "OPERATION_NOT_SUPPORTED"
PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"
NOT_ALLOWED_MESSAGE = "Only trusted documents may run on this server."
# Apollo Server's answer to a hash it cannot serve: 200 whatever the media type, so no error
# handling between server and client hides the message Apollo's link reacts to, and not cacheable,
# so the client's retry with the document is not answered from a cache (GET requests by hash are).
PERSISTED_QUERY_ERROR_HEADERS = {"Cache-Control": "private, no-cache, must-revalidate"}
# Called for each operation the cost limit refuses (api.metrics counts them); nothing when None.
on_cost_refused: Callable[[], None] | None = None


class RequestRefused(Exception):
    """A request error: nothing was executed, there is no `data`, only these errors.

    `status` is the HTTP status under `application/graphql-response+json`. `malformed` marks a
    request that is not a well-formed GraphQL-over-HTTP request at all (not an object, no query, a
    parameter of the wrong type, a persisted query extension that cannot be taken): such a request
    is a 400 whatever media type the client accepts. `headers` go with the HTTP answer.
    """

    def __init__(
        self,
        errors: list[GraphQLError],
        *,
        status: int = 400,
        malformed: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(errors[0].message if errors else "request refused")
        self.errors = errors
        self.status = status
        self.malformed = malformed
        self.headers = headers

    @classmethod
    def one(
        cls,
        message: str,
        code: str,
        *,
        status: int = 400,
        malformed: bool = False,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> RequestRefused:
        """A refusal with a single error carrying `code` (and any further `extensions`)."""
        error = GraphQLError(message, extensions={"code": code, **extensions})
        return cls([error], status=status, malformed=malformed, headers=headers)


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """The parameters of one GraphQL request, each of the type the GraphQL-over-HTTP spec allows.

    `query` is None only when `extensions.persistedQuery` names the document instead.
    """

    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None

    @property
    def persisted_query(self) -> object:
        """`extensions.persistedQuery` as sent (Apollo's `{"version": 1, "sha256Hash": ...}`), or None."""
        return (self.extensions or {}).get("persistedQuery")


def operation_request(payload: object) -> OperationRequest:
    """Check the shape of a request's parameters (a JSON body, a query string, a websocket payload).

    Raises a malformed `RequestRefused` (BAD_REQUEST) for anything the spec does not allow. The
    document may be left out when `extensions.persistedQuery` names it (`admit` looks it up).
    """
    if not isinstance(payload, Mapping):
        raise RequestRefused.one("A GraphQL request must be a JSON object.", BAD_REQUEST, malformed=True)
    extensions = payload.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise _malformed("`extensions` must be an object or null.")
    query = payload.get("query")
    if query is None:
        if extensions is None or extensions.get("persistedQuery") is None:
            raise _malformed(
                "No GraphQL query found in the request: send `query` with the document "
                "(or name a persisted one in `extensions.persistedQuery`)."
            )
    elif not isinstance(query, str):
        raise _malformed("`query` must be a string.")
    variables = payload.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise _malformed("`variables` must be an object or null.")
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise _malformed("`operationName` must be a string or null.")
    return OperationRequest(query, variables, operation_name, extensions)


@dataclass(frozen=True, slots=True)
class Admitted:
    """An operation the gate let through: the request to run and its coerced variables."""

    request: OperationRequest
    variables: VariableValues


async def admit(
    schema: EventsSchema,
    request: OperationRequest,
    context: Context,
    allowed: Collection[OperationType],
    *,
    refused_statuses: Mapping[OperationType, int] | None = None,
) -> Admitted:
    """Everything decided before execution; raises `RequestRefused` for the first thing that fails.

    Returns the request to run (as sent, with the text of a document named by hash) and its
    variables as coerced. `allowed` are
    the operation types this transport serves; another type is refused with the HTTP status
    `refused_statuses` names for it (400 when it names none; 405 for a mutation over GET).
    """
    request, register_as = _find_document(schema, request)
    query = request.query
    assert query is not None  # _find_document found it
    try:
        document = schema.parsed(query)
    except GraphQLSyntaxError as error:
        raise RequestRefused([with_code(error, GRAPHQL_PARSE_FAILED)]) from None
    operation = _pick_operation(document, request.operation_name)
    if operation.operation not in allowed:
        names = ", ".join(sorted(kind.value for kind in allowed))
        raise RequestRefused.one(
            f"{operation.operation.value.capitalize()} operations are not served here (only {names}).",
            OPERATION_NOT_SUPPORTED,
            status=(refused_statuses or {}).get(operation.operation, 400),
        )
    if errors := schema.validation_errors(query):
        raise RequestRefused([with_code(error, GRAPHQL_VALIDATION_FAILED) for error in errors])
    coerced = get_variable_values(
        schema._schema, operation.variable_definitions or (), request.variables or {}, max_errors=20
    )
    if isinstance(coerced, list):
        raise RequestRefused([with_code(error, BAD_USER_INPUT) for error in coerced])
    # One walk per (document, operation, variables) while it is asked for often (policy.Assessments).
    assessment = schema.assessments.get(
        _request_digest(query, request.operation_name, request.variables),
        lambda: policy.assess(schema, document, operation, coerced),
    )
    try:
        policy.check_cost(schema, operation, assessment)
    except RequestRefused:
        if on_cost_refused is not None:
            on_cost_refused()
        raise
    await policy.check_access(schema, assessment, context)
    if register_as is not None and schema.persisted_queries is not None:
        # Only now, as Apollo Server does: a document is registered by a request that may run it,
        # so a GET (queries only) never registers a mutation.
        schema.persisted_queries.remember(register_as, query)
    return Admitted(request, coerced)


def _find_document(schema: EventsSchema, request: OperationRequest) -> tuple[OperationRequest, str | None]:
    """The request with its document's text, and the hash to register it under once admitted.

    Apollo Server's rules for `extensions.persistedQuery`, in its order: not served (APQ off) ->
    PERSISTED_QUERY_NOT_SUPPORTED; a version other than 1 -> 400; a hash alone -> the document
    registered under it, or PERSISTED_QUERY_NOT_FOUND (both 200, uncached, so Apollo's link sends
    the document); a hash with the document -> 400 unless it is the document's SHA-256, else run and
    registered. With trusted documents only those run: anything else is PERSISTED_QUERY_NOT_ALLOWED,
    before parsing, and nothing is registered.
    """
    trusted = schema.trusted_documents
    persisted = request.persisted_query
    if persisted is None:
        if trusted is not None and (request.query is None or not trusted.trusts(request.query)):
            raise _not_allowed()
        return request, None
    if trusted is None and schema.persisted_queries is None:
        raise RequestRefused.one(
            "PersistedQueryNotSupported",
            PERSISTED_QUERY_NOT_SUPPORTED,
            status=200,
            headers=PERSISTED_QUERY_ERROR_HEADERS,
        )
    if not isinstance(persisted, Mapping) or not _is_one(persisted.get("version")):
        raise _malformed("Unsupported persisted query version")
    sha256 = persisted.get("sha256Hash")
    if not isinstance(sha256, str):
        raise _malformed("`extensions.persistedQuery.sha256Hash` must be a string.")
    if request.query is None:
        if trusted is not None:
            document = trusted.get(sha256)
        else:
            assert schema.persisted_queries is not None
            document = schema.persisted_queries.get(sha256)
        if document is not None:
            return replace(request, query=document), None
        if trusted is not None:
            raise _not_allowed()
        raise RequestRefused.one(
            "PersistedQueryNotFound",
            PERSISTED_QUERY_NOT_FOUND,
            status=200,
            headers=PERSISTED_QUERY_ERROR_HEADERS,
        )
    if sha256_hex(request.query) != sha256:
        raise _malformed("provided sha does not match query")
    if trusted is not None:
        if sha256 not in trusted:
            raise _not_allowed()
        return request, None
    return request, sha256


def _is_one(version: object) -> bool:
    # JSON's 1 or 1.0; not true (which Python would take for 1), not "1".
    return type(version) in (int, float) and version == 1


def _not_allowed() -> RequestRefused:
    return RequestRefused.one(NOT_ALLOWED_MESSAGE, PERSISTED_QUERY_NOT_ALLOWED, status=403)


def _request_digest(query: str, operation_name: str | None, variables: object) -> bytes:
    """What identifies an operation and its inputs, in 32 bytes whatever their size."""
    digest = hashlib.sha256(query.encode())
    digest.update(b"\0" if operation_name is None else b"\1" + operation_name.encode())
    digest.update(b"\0" + canonical_json(variables))
    return digest.digest()


def _pick_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    operation = get_operation_ast(document, name)
    if operation is not None:
        return operation
    if name is not None:
        message = f"Unknown operation named '{name}'."
    elif any(isinstance(definition, OperationDefinitionNode) for definition in document.definitions):
        message = "The document holds several operations: name the one to run in `operationName`."
    else:
        message = "The document holds no operation to run."
    raise RequestRefused.one(message, OPERATION_RESOLUTION_FAILURE)


def _malformed(message: str) -> RequestRefused:
    return RequestRefused.one(message, BAD_REQUEST, malformed=True)
