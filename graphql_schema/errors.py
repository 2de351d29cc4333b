"""GraphQL errors the client may see, and the one mapping from domain errors to them."""

import logging

from graphql import GraphQLError

from db.engine import UNAVAILABLE_MESSAGE, DatabaseUnavailable
from db.filters import FILTER_FIELDS_BY_NAME, InvalidFilter
from db.idempotency import IdempotencyKeyReused, InvalidIdempotencyKey
from db.live_feed.subscription import AccessRevoked, SubscriptionEnded
from db.validation import InvalidEvent

log = logging.getLogger(__name__)

BAD_USER_INPUT = "BAD_USER_INPUT"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
# A request that is not a well-formed GraphQL request, or asks for what this transport cannot do.
BAD_REQUEST = "BAD_REQUEST"

INTERNAL_ERROR_MESSAGE = "Internal server error."


class BadUserInput(GraphQLError):
    """The client sent something we refuse; `field` (and `index` in a batch) say where."""

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None) -> None:
        extensions: dict[str, object] = {"code": BAD_USER_INPUT}
        if field is not None:
            extensions["field"] = field
        if index is not None:
            extensions["index"] = index
        super().__init__(message, extensions=extensions)


class SubscriptionEndedError(GraphQLError):
    """Why a live stream stopped, for the client (a GraphQLError, so it is not masked)."""

    def __init__(self, ended: SubscriptionEnded) -> None:
        # A slow subscriber or a broken feed catches up from the table (db.live_feed.follow): what
        # ends a stream is a feed down for too long, a shutdown, or a revoked key.
        code = UNAUTHENTICATED if isinstance(ended, AccessRevoked) else SERVICE_UNAVAILABLE
        super().__init__(str(ended), extensions={"code": code})


def invalid_event_error(error: InvalidEvent, *, index: int | None = None) -> BadUserInput:
    """An event rule broken, named by field (and batch position) for the client."""
    return BadUserInput(error.reason, field=error.field, index=index)


def invalid_filter_error(error: InvalidFilter) -> BadUserInput:
    """A filter value refused, named by its GraphQL input field (`filter.from`, `filter.search`)."""
    spec = FILTER_FIELDS_BY_NAME.get(error.field)
    name = spec.graphql if spec is not None and spec.graphql is not None else error.field
    return BadUserInput(error.reason, field=f"filter.{name}")


def _is_client_safe(error: GraphQLError) -> bool:
    # Syntax/validation errors have no original; BadUserInput is one we raised on purpose.
    return error.original_error is None or isinstance(error.original_error, GraphQLError)


def client_error(error: GraphQLError) -> GraphQLError:
    """What the client may see of `error`: ours and GraphQL's own pass, anything else is masked."""
    original = error.original_error
    if _is_client_safe(error):
        return error
    if isinstance(original, InvalidEvent):
        return _replace(error, original.reason, {"code": BAD_USER_INPUT, "field": original.field})
    if isinstance(original, InvalidIdempotencyKey | IdempotencyKeyReused):
        return _replace(error, str(original), {"code": BAD_USER_INPUT, "field": "idempotencyKey"})
    if isinstance(original, InvalidFilter):
        return _replace(error, original.reason, invalid_filter_error(original).extensions or {})
    if isinstance(original, DatabaseUnavailable):
        return _replace(error, UNAVAILABLE_MESSAGE, {"code": SERVICE_UNAVAILABLE})
    # The message of an arbitrary exception may quote SQL or data: it goes to the log only.
    return _replace(error, INTERNAL_ERROR_MESSAGE, {"code": INTERNAL_SERVER_ERROR})


def log_server_errors(errors: list[GraphQLError]) -> None:
    """Log what is the server's problem; the client's own mistakes are not worth a log line."""
    for error in errors:
        original = error.original_error
        if _is_client_safe(error) or isinstance(
            original, InvalidEvent | InvalidFilter | InvalidIdempotencyKey | IdempotencyKeyReused
        ):
            continue
        if isinstance(original, DatabaseUnavailable):
            log.warning("database unavailable during GraphQL operation at %s: %s", error.path, original)
        else:
            log.error("unexpected error in GraphQL resolver at %s", error.path, exc_info=original)


def with_code(error: GraphQLError, code: str) -> GraphQLError:
    """`error` with `extensions.code` set (graphql-core's own errors carry none); a code it has stays."""
    if error.extensions and "code" in error.extensions:
        return error
    return _replace(error, error.message, {**(error.extensions or {}), "code": code})


def _replace(error: GraphQLError, message: str, extensions: dict[str, object]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )
