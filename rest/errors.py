"""Domain errors to HTTP, once, at the edge: every error under /api is JSON with a "message"."""

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from db.api_keys import NotAuthenticated, NotPermitted
from db.engine import UNAVAILABLE_MESSAGE, DatabaseUnavailable
from db.filters import InvalidFilter
from db.idempotency import IdempotencyKeyReused, InvalidIdempotencyKey
from db.validation import InvalidEvent, PayloadShapeError
from rest.fields_mask import MaskParseError
from rest.from_date import InvalidFromDate
from rest.responses import json_response, message_response

try:
    from fastapi.routing import iter_route_contexts
except ImportError:  # FastAPI before included routers stayed nested: app.router.routes is flat

    def iter_route_contexts(routes: Iterable[Any]) -> Iterable[Any]:  # type: ignore[misc]
        return routes


log = logging.getLogger(__name__)

# Texts the original (Werkzeug) service answered with; clients may have matched on them.
STATUS_MESSAGES = {
    400: "The browser (or proxy) sent a request that this server could not understand.",
    404: (
        "The requested URL was not found on the server. If you entered the URL manually "
        "please check your spelling and try again."
    ),
    405: "The method is not allowed for the requested URL.",
}
MALFORMED_BODY = STATUS_MESSAGES[400]
RETRY_AFTER_SECONDS = "2"


class MalformedBody(Exception):
    """The body claims to be JSON and is not."""


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = STATUS_MESSAGES.get(error.status_code) or str(error.detail)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
    return message_response(message, error.status_code, headers)


def _allowed_methods(request: Request) -> set[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    # FastAPI keeps included routers nested (app.router.routes holds one entry per router):
    # iter_route_contexts walks down to the routes as mounted, prefixes applied.
    for route in iter_route_contexts(request.app.router.routes):
        # PARTIAL: the path matches but not the method; FULL cannot happen on a 405.
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods


async def _request_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = {".".join(str(part) for part in item["loc"][1:]): item["msg"] for item in error.errors()}
    return json_response({"errors": errors, "message": "Input payload validation failed"}, 400)


async def _payload_shape_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, PayloadShapeError)
    return json_response({"errors": error.errors, "message": "Input payload validation failed"}, 400)


async def _invalid_event(request: Request, error: Exception) -> Response:
    assert isinstance(error, InvalidEvent)
    return message_response(f"Failed with {error.reason}", 400)


async def _malformed_body(request: Request, error: Exception) -> Response:
    return message_response(MALFORMED_BODY, 400)


async def _mask_parse_error(request: Request, error: Exception) -> Response:
    return message_response(f"Mask parse error: {error}", 400)


async def _invalid_filter(request: Request, error: Exception) -> Response:
    assert isinstance(error, InvalidFilter)
    return message_response(f"Unable to retrieve events - {error.reason}", 400)


async def _invalid_from_date(request: Request, error: Exception) -> Response:
    return message_response(str(error), 400)


async def _invalid_idempotency_key(request: Request, error: Exception) -> Response:
    return message_response(str(error), 400)


async def _idempotency_key_reused(request: Request, error: Exception) -> Response:
    return message_response(str(error), 422)


async def _database_unavailable(request: Request, error: Exception) -> Response:
    log.warning("database unavailable: %s", error)
    return message_response(UNAVAILABLE_MESSAGE, 503, {"Retry-After": RETRY_AFTER_SECONDS})


async def _not_authenticated(request: Request, error: Exception) -> Response:
    return message_response(str(error), 401, {"WWW-Authenticate": "Bearer"})


async def _not_permitted(request: Request, error: Exception) -> Response:
    return message_response(str(error), 403)


async def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return message_response("Internal server error.", 500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the one mapping from errors to REST answers."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(PayloadShapeError, _payload_shape_error)
    app.add_exception_handler(InvalidEvent, _invalid_event)
    app.add_exception_handler(MalformedBody, _malformed_body)
    app.add_exception_handler(MaskParseError, _mask_parse_error)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    app.add_exception_handler(InvalidFilter, _invalid_filter)
    app.add_exception_handler(InvalidFromDate, _invalid_from_date)
    app.add_exception_handler(InvalidIdempotencyKey, _invalid_idempotency_key)
    app.add_exception_handler(IdempotencyKeyReused, _idempotency_key_reused)
    app.add_exception_handler(NotAuthenticated, _not_authenticated)
    app.add_exception_handler(NotPermitted, _not_permitted)
    app.add_exception_handler(Exception, _unexpected)
