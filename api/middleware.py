"""Pure-ASGI middleware: request ids with one log line per request, and the request size limits."""

import logging
import re
import time
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
