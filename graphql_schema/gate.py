"""The gate every GraphQL operation passes before anything of it runs, over HTTP and websockets alike.

A transport (graphql_schema.http_transport, graphql_schema.websockets) turns what the client
sent into an `OperationRequest` (`operation_request`), then asks `admit` whether it may run. `admit`
parses, picks the operation, validates, coerces the variables and applies the policy (cost limit and
per-field authorization, graphql_schema.policy), in that order and in this one place, so no resolver
and no SQL runs for a request that will be refused. A refusal is a `RequestRefused` carrying GraphQL
errors, each with an `extensions.code`, and the HTTP status it deserves. Only then does the transport
hand the operation to Strawberry, which finds the parsed document and its validation in the caches
this gate filled (see `AdmittedDocuments` in graphql_schema.schema).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
)
from graphql.execution.values import get_variable_values

from graphql_schema import policy
from graphql_schema.errors import BAD_REQUEST, BAD_USER_INPUT, with_code

if TYPE_CHECKING:
    from graphql_schema.context import Context
    from graphql_schema.schema import EventsSchema

GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
OPERATION_RESOLUTION_FAILURE = "OPERATION_RESOLUTION_FAILURE"
PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
OPERATION_NOT_SUPPORTED = "OPERATION_NOT_SUPPORTED"


class RequestRefused(Exception):
    """A request error: nothing was executed, there is no `data`, only these errors.

    `status` is the HTTP status under `application/graphql-response+json`. `malformed` marks a
    request that is not a well-formed GraphQL-over-HTTP request at all (not an object, no query, a
    parameter of the wrong type): such a request is a 400 whatever media type the client accepts.
    """

    def __init__(self, errors: list[GraphQLError], *, status: int = 400, malformed: bool = False) -> None:
        super().__init__(errors[0].message if errors else "request refused")
        self.errors = errors
        self.status = status
        self.malformed = malformed

    @classmethod
    def one(
        cls, message: str, code: str, *, status: int = 400, malformed: bool = False, **extensions: Any
    ) -> RequestRefused:
        """A refusal with a single error carrying `code` (and any further `extensions`)."""
        error = GraphQLError(message, extensions={"code": code, **extensions})
        return cls([error], status=status, malformed=malformed)


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """The parameters of one GraphQL request, each of the type the GraphQL-over-HTTP spec allows."""

    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None


def operation_request(payload: object) -> OperationRequest:
    """Check the shape of a request's parameters (a JSON body, a query string, a websocket payload).

    Raises a malformed `RequestRefused` (BAD_REQUEST) for anything the spec does not allow, and
    PERSISTED_QUERY_NOT_SUPPORTED for a hash-only persisted query, so Apollo's link falls back to
    sending the whole document.
    """
    if not isinstance(payload, Mapping):
        raise RequestRefused.one("A GraphQL request must be a JSON object.", BAD_REQUEST, malformed=True)
    extensions = payload.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise _malformed("`extensions` must be an object or null.")
    query = payload.get("query")
    if query is None:
        if extensions is not None and "persistedQuery" in extensions:
            raise RequestRefused.one("PersistedQueryNotSupported", PERSISTED_QUERY_NOT_SUPPORTED)
        raise _malformed("No GraphQL query found in the request: send `query` with the document.")
    if not isinstance(query, str):
        raise _malformed("`query` must be a string.")
    variables = payload.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise _malformed("`variables` must be an object or null.")
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise _malformed("`operationName` must be a string or null.")
    return OperationRequest(query, variables, operation_name, extensions)


async def admit(
    schema: EventsSchema,
    request: OperationRequest,
    context: Context,
    allowed: Collection[OperationType],
    *,
    refused_statuses: Mapping[OperationType, int] | None = None,
) -> None:
    """Everything decided before execution; raises `RequestRefused` for the first thing that fails.

    `allowed` are the operation types this transport serves; another type is refused with the HTTP
    status `refused_statuses` names for it (400 when it names none; 405 for a mutation over GET).
    """
    try:
        document = schema.parsed(request.query)
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
    if errors := schema.validation_errors(request.query):
        raise RequestRefused([with_code(error, GRAPHQL_VALIDATION_FAILED) for error in errors])
    coerced = get_variable_values(
        schema._schema, operation.variable_definitions or (), request.variables or {}, max_errors=20
    )
    if isinstance(coerced, list):
        raise RequestRefused([with_code(error, BAD_USER_INPUT) for error in coerced])
    policy.check_cost(schema, document, operation, coerced)
    await policy.check_access(schema, document, operation, coerced, context)


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
