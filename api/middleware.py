"""Pure-ASGI middleware: request ids with one log line per request, request metrics, size limits."""

import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import ServiceMetrics, request_door

try:
    from fastapi.routing import iter_route_contexts
except ImportError:  # FastAPI before included routers stayed nested: app.router.routes is flat

    def iter_route_contexts(routes: Iterable[Any]) -> Iterable[Any]:  # type: ignore[misc]
        return routes


access_log = logging.getLogger("api.access")

# A client-sent id is echoed only when it is short and plain, so it cannot forge log lines.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestLogMiddleware:
    """Give every HTTP request an id (`X-Request-ID`, echoed or made) and log one line for it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # Method, path and status only: query strings, bodies and headers may carry secrets.
            access_log.info(
                "request method=%s path=%s status=%d duration_ms=%.1f request_id=%s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
            )


class RequestMetricsMiddleware:
    """Count and time every HTTP request by route template and status (api.metrics).

    The route label is the template of the route that served the request (`/api/events/{event_id}`),
    never the raw path, so any number of ids or unknown paths make a bounded set of series. It also
    marks the request's door (REST or GraphQL) for the events it records, websockets included.
    """

    def __init__(
        self, app: ASGIApp, *, metrics: ServiceMetrics, routes: Starlette, graphql_path: str
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates(routes)
        self.graphql_path = graphql_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        graphql = path == self.graphql_path or path.startswith(self.graphql_path + "/")
        door = request_door.set("graphql" if graphql else "rest")
        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                request_door.reset(door)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            request_door.reset(door)
            self.metrics.observe_request(
                scope["method"], self.templates.of(scope, path), status, time.perf_counter() - started
            )


UNMATCHED_ROUTE = "<unmatched>"


class RouteTemplates:
    """The route template of a request, once the app has handled it."""

    # Templates found by matching, by (method, path): the plain Starlette routes in front (REST's
    # lean routes, POST /graphql) leave no route in the scope, and matching every route costs
    # ~20 µs a request. Bounded: paths with ids in them are as many as the ids.
    _KEPT_PATHS = 1024

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._routes: list[Any] | None = None
        self._matched: dict[tuple[str, str], str] = {}

    def of(self, scope: Scope, path: str) -> str:
        """The template of the route that served `scope`; for a request no route served (refused
        before routing, a mount, a 404), the first route `path` matches, else UNMATCHED_ROUTE."""
        route = scope.get("route")
        if route is not None:
            return route.path_format
        key = (scope["method"], path)
        template = self._matched.get(key)
        if template is None:
            template = self._match(*key)
            if len(self._matched) >= self._KEPT_PATHS:
                self._matched.clear()
            self._matched[key] = template
        return template

    def _match(self, method: str, path: str) -> str:
        if self._routes is None:  # every route is added by now: create_app has returned
            self._routes = list(iter_route_contexts(self.app.router.routes))
        # A clean scope: routing has changed the request's (a mount's root_path, path_params).
        probe = {"type": "http", "path": path, "root_path": "", "method": method}
        partial = UNMATCHED_ROUTE  # the path matches but not the method: Starlette's 405
        for candidate in self._routes:
            match, _ = candidate.matches(probe)
            if match is Match.FULL:
                return candidate.path_format
            if match is Match.PARTIAL and partial is UNMATCHED_ROUTE:
                partial = candidate.path_format
        return partial


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SAFE_REQUEST_ID.fullmatch(text) else None
    return None


class BodySizeLimitMiddleware:
    """Answer 413 for a request body over `max_bytes`, declared or streamed.

    The body is read here, before the app runs, so the app never sees a partial body and the 413
    can always be sent (nothing has been answered yet). Bodies are buffered by the routes anyway.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay_receive, send)

    async def _reject(self, send: Send) -> None:
        body = orjson.dumps(
            {"message": f"The request body is larger than the limit of {self.max_bytes} bytes."}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class HeaderSizeLimitMiddleware:
    """Answer 431 when a request's header fields together are over `max_bytes`.

    uvicorn's httptools parser puts no bound on them, and h11's bound is a server option, not
    ours: this holds the same limit whichever parser runs us. The server has read them by now, so
    this bounds what a request may make the app hold and parse, not the server's own buffer. The
    target is not counted: a long query string carries filter values, which the filters bound.
    Websocket handshakes are refused before they are accepted: with the same 431 where the server
    can send an HTTP answer, else by closing.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _header_bytes(scope) <= self.max_bytes:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps(
            {"message": f"The request headers are larger than the limit of {self.max_bytes} bytes."}
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if scope["type"] == "http":
            # The body is left unread: closing is cheaper than draining whatever follows.
            await send(
                {
                    "type": "http.response.start",
                    "status": 431,
                    "headers": [*headers, (b"connection", b"close")],
                }
            )
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": 431, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


def _header_bytes(scope: Scope) -> int:
    """The header fields' size as sent, near enough: each as `name: value` plus CRLF."""
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))


class ControlCharacterPathMiddleware:
    """Answer 404 for a path holding control characters (a decoded %0A, %00, ...).

    No route of ours has one, but Starlette anchors its route patterns with `$`, which in Python
    also matches before a final newline: `/api/events/%0A` would be served as `/api/events/`
    (found by the fuzz tests). Refusing such paths here mends that for every route at once.
    """

    def __init__(self, app: ASGIApp, not_found_body: bytes) -> None:
        self.app = app
        self.not_found_body = not_found_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and _CONTROL_CHARACTER.search(scope["path"]):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(self.not_found_body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": self.not_found_body})
            return
        await self.app(scope, receive, send)


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
