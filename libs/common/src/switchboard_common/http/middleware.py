"""ASGI middleware: correlation ids, request metrics and a request body size limit.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task per request and streams bodies untouched.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard_common.logging import correlation_id
from switchboard_common.observability import HTTP_LATENCY, HTTP_REQUESTS

CORRELATION_HEADER = b"x-correlation-id"
_VALID_CID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class CorrelationIdMiddleware:
    """Takes the caller's X-Correlation-ID (or makes one), exposes it to logs and returns it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(CORRELATION_HEADER, b"").decode("latin-1")
        cid = given if _VALID_CID.match(given) else str(uuid.uuid4())
        token = correlation_id.set(cid)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (CORRELATION_HEADER, cid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            correlation_id.reset(token)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route_template(scope)
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    """The route's path with its parameters named, not valued, so metrics do not explode with ids.

    The router records the matched endpoint and path parameters in the (shared) scope; reading them after
    the request works whatever nesting of routers matched it.
    """
    if "endpoint" not in scope:
        return "unmatched"
    path: str = scope.get("path", "")
    for name, value in scope.get("path_params", {}).items():
        path = path.replace(str(value), "{" + name + "}")
    return path


class BodySizeLimitMiddleware:
    """Refuses bodies larger than ``max_bytes`` with a JSON 413, before the app reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "payload_too_large",
                    "message": f"request body exceeds {self.max_bytes} bytes",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from inside the body stream. An HTTPException, so that FastAPI's body parsing lets it through
    (it turns other errors into a 400) and the JSON error handler answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes")
