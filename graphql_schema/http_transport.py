"""GraphQL over HTTP, to the GraphQL-over-HTTP spec: read the request, pass the gate, run it, answer.

Every operation that arrives by HTTP goes through `serve`. Its parameters come from the JSON body
(POST) or the query string (GET); the gate (graphql_schema.gate) decides whether it may run; only
then does Strawberry execute it. The answer's media type follows the client's `Accept`:

- `application/graphql-response+json`, when asked for by name: a request error (anything the gate
  refuses) is a 4xx with no `data`.
- `application/json` otherwise (no `Accept`, `*/*`, `application/json`): as before the new media type
  existed, a request error is a 200 with `errors`; only a request that is not a well-formed
  GraphQL-over-HTTP request (or a method or media type we do not serve) is a 4xx.

Either way every refusal is a GraphQL response, `{"errors": [{"message", "extensions": {"code"}}]}`,
and an executed operation is a 200 with `data`, field errors or not. The exceptions are Apollo
Server's: a hash it cannot serve (PersistedQueryNotFound/NotSupported) is a 200 in both, marked
uncacheable, and a persisted query it cannot take (version, hash mismatch) a 400 in both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from graphql import OperationType
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from strawberry.http import process_result
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType as StrawberryOperationType

from db.engine import UNAVAILABLE_MESSAGE, DatabaseUnavailable
from db.json_text import json_bytes
from graphql_schema import gate
from graphql_schema.errors import BAD_REQUEST, SERVICE_UNAVAILABLE
from graphql_schema.plans import execute_plan

if TYPE_CHECKING:
    from graphql_schema.context import Context
    from graphql_schema.schema import EventsSchema

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"
# The Content-Type of each: JSON is UTF-8 by definition (RFC 8259 defines no charset for
# application/json, and we keep today's header); the newer type states it, as the spec's examples do.
CONTENT_TYPES = {
    GRAPHQL_RESPONSE_JSON: f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8",
    APPLICATION_JSON: APPLICATION_JSON,
}
# Statuses about the HTTP exchange rather than the GraphQL request: they hold in both media types.
HTTP_LEVEL_STATUSES = frozenset({405, 415, 503})
GET_PARAMETERS = ("query", "operationName", "variables", "extensions")
JSON_ENCODED_GET_PARAMETERS = frozenset({"variables", "extensions"})
# A run of digits that may be an integer beyond 64 bits (at most 20 digits; 19 to be safe).
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")
_LONG_NUMBER_TEXT = re.compile(r"\d{19}")


@dataclass(frozen=True, slots=True)
class MethodRule:
    """The operation types one HTTP method may run, and the status refusing each of the others."""

    allowed: frozenset[OperationType]
    refused_statuses: Mapping[OperationType, int]

    def strawberry_types(self) -> set[StrawberryOperationType]:
        """`allowed` as Strawberry names them (graphql-core and Strawberry each have their enum)."""
        return {StrawberryOperationType(kind.value) for kind in self.allowed}


# GET must change nothing (the spec: a mutation over GET is 405 Method Not Allowed, and POST serves
# it). Subscriptions are served over websockets only, so no method serves them: a plain 400.
METHOD_RULES = {
    "GET": MethodRule(frozenset({OperationType.QUERY}), {OperationType.MUTATION: 405}),
    "POST": MethodRule(frozenset({OperationType.QUERY, OperationType.MUTATION}), {}),
}


async def serve(schema: EventsSchema, request: Request, context: Context) -> Response:
    """Answer one GraphQL-over-HTTP request (GET or POST) with a GraphQL response."""
    media_type = response_media_type(request.headers.get("accept"))
    rule = METHOD_RULES[request.method]
    try:
        sent = gate.operation_request(await read_parameters(request))
        admitted = await gate.admit(
            schema, sent, context, rule.allowed, refused_statuses=rule.refused_statuses
        )
    except gate.RequestRefused as refusal:
        return refusal_response(refusal, media_type)
    except DatabaseUnavailable:
        # The key could not be checked: the server's trouble, not the client's, so no traceback either.
        unavailable = gate.RequestRefused.one(UNAVAILABLE_MESSAGE, SERVICE_UNAVAILABLE, status=503)
        return refusal_response(unavailable, media_type)
    operation = admitted.request
    assert operation.query is not None  # the document's text, also when the request named it by hash
    if schema.settings.graphql_compiled_plans:
        plan = schema.plans.plan(operation.query, operation.operation_name)
        if plan is not None:
            data = await execute_plan(plan, context, admitted.variables, schema)
            if data is not None:
                return graphql_response({"data": data}, media_type, 200)
    result = await schema.execute(
        operation.query,
        variable_values=operation.variables,
        context_value=context,
        operation_name=operation.operation_name,
        allowed_operation_types=rule.strawberry_types(),
        operation_extensions=operation.extensions,
    )
    return result_response(result, media_type)


def response_media_type(accept: str | None) -> str:
    """The media type to answer in, from the client's `Accept` header.

    `application/graphql-response+json` only when named (a wildcard is what legacy clients send, and
    must keep today's answers) and liked at least as much as `application/json`. Anything else,
    even an `Accept` we cannot satisfy, gets `application/json`, as the spec allows.
    """
    if not accept:
        return APPLICATION_JSON
    ranges = _media_ranges(accept)
    graphql_quality = ranges.get(GRAPHQL_RESPONSE_JSON, 0.0)
    if graphql_quality > 0 and graphql_quality >= _quality(ranges, APPLICATION_JSON):
        return GRAPHQL_RESPONSE_JSON
    return APPLICATION_JSON


def _media_ranges(accept: str) -> dict[str, float]:
    """Each media range of an `Accept` header with its q-value (parameters other than q ignored)."""
    ranges: dict[str, float] = {}
    for item in accept.split(","):
        media_range, *parameters = (part.strip() for part in item.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                quality = _q_value(value.strip())
        if media_range:
            ranges[media_range.lower()] = max(quality, ranges.get(media_range.lower(), 0.0))
    return ranges


def _q_value(text: str) -> float:
    # A malformed q-value makes its range count for nothing rather than for everything.
    try:
        quality = float(text)
    except ValueError:
        return 0.0
    return min(max(quality, 0.0), 1.0)


def _quality(ranges: Mapping[str, float], media_type: str) -> float:
    """How much `media_type` is liked: the q-value of the most specific range matching it."""
    kind = media_type.split("/", 1)[0]
    for candidate in (media_type, f"{kind}/*", "*/*"):
        if candidate in ranges:
            return ranges[candidate]
    return 0.0


async def read_parameters(request: Request) -> object:
    """The request's GraphQL parameters: a GET's query string, a POST's JSON body (shape unchecked)."""
    if request.method == "GET":
        return query_string_parameters(request.query_params)
    require_json_content_type(request.headers.get("content-type"))
    return decode_json(await request.body(), "The request body")


def query_string_parameters(params: QueryParams) -> dict[str, object]:
    """A GET's parameters, `variables` and `extensions` JSON-decoded; an empty one counts as absent."""
    parameters: dict[str, object] = {}
    for name in GET_PARAMETERS:
        values = params.getlist(name)
        if len(values) > 1:
            raise _malformed(f"`{name}` appears {len(values)} times in the query string; send it once.")
        if not values or not values[0]:
            continue
        value = values[0]
        parameters[name] = decode_json(value, f"`{name}`") if name in JSON_ENCODED_GET_PARAMETERS else value
    return parameters


def require_json_content_type(content_type: str | None) -> None:
    """Refuse (415) a POST body that is not `application/json` (any parameters, such as a charset)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != APPLICATION_JSON:
        sent = f"not {media_type}" if media_type else "no Content-Type was sent"
        raise gate.RequestRefused.one(
            f"Send the GraphQL request as `Content-Type: application/json` ({sent}).",
            BAD_REQUEST,
            status=415,
            malformed=True,
        )


def decode_json(text: bytes | str, what: str) -> object:
    """`text` decoded as JSON, integers of any size exact; a malformed refusal when it is not JSON.

    orjson first: it is fast and refuses nesting deeper than 1024 levels outright. Two things it
    gets wrong for us go to the standard library: integers beyond 64 bits (orjson makes them
    floats, losing digits an event's `data` must keep) and escaped lone surrogates (`"\\ud800"`:
    JSON allows them, and the resolvers refuse them with a field error, as they always have).
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return _decode_exactly(text, what, reason=str(error))
    if isinstance(text, bytes):
        has_long_number = _LONG_NUMBER_BYTES.search(text) is not None
    else:
        has_long_number = _LONG_NUMBER_TEXT.search(text) is not None
    if has_long_number:
        return _decode_exactly(text, what, reason="")
    return value


def _decode_exactly(text: bytes | str, what: str, reason: str) -> object:
    try:
        document = text.decode() if isinstance(text, bytes) else text  # JSON bodies are UTF-8
        return json.loads(document, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:  # RecursionError: nesting past Python's limit
        raise _malformed(f"{what} is not valid JSON ({reason or error}).") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _malformed(message: str) -> gate.RequestRefused:
    return gate.RequestRefused.one(message, BAD_REQUEST, malformed=True)


def refusal_status(refusal: gate.RequestRefused, media_type: str) -> int:
    """The status of a refusal: its own under graphql-response+json, 200 for request errors otherwise."""
    if media_type == GRAPHQL_RESPONSE_JSON or refusal.malformed or refusal.status in HTTP_LEVEL_STATUSES:
        return refusal.status
    return 200


def refusal_response(refusal: gate.RequestRefused, media_type: str) -> Response:
    """A request error: `errors` only (nothing ran, so there is no `data`)."""
    status = refusal_status(refusal, media_type)
    headers = dict(refusal.headers or {})
    if status == 405:  # only a mutation over GET is a 405, and POST serves it
        headers["Allow"] = "POST"
    body = {"errors": [error.formatted for error in refusal.errors]}
    return graphql_response(body, media_type, status, headers)


def result_response(result: ExecutionResult, media_type: str) -> Response:
    """An executed operation: 200 in either media type, with its field errors if any."""
    return graphql_response(process_result(result), media_type, 200)


def graphql_response(
    body: Mapping[str, Any], media_type: str, status: int, headers: Mapping[str, str] | None = None
) -> Response:
    """`body` as JSON in `media_type`."""
    return Response(
        json_bytes(body), status_code=status, media_type=CONTENT_TYPES[media_type], headers=headers
    )
