"""The one ASGI middleware every request passes: correlation id, request metrics, body size limit.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task per request and streams bodies untouched. One
middleware rather than three: each layer costs a call and a closure per message on the hottest path.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard_common.logging import correlation_id
from switchboard_common.observability import HTTP_LATENCY, HTTP_REQUESTS

CORRELATION_HEADER = b"x-correlation-id"
_VALID_CID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """* Takes the caller's X-Correlation-ID (or makes one), exposes it to logs and returns it.
    * Counts requests and their latency per route template.
    * Refuses bodies larger than ``max_bytes`` with a JSON 413, before the app reads them (declared by
      Content-Length, or counted while a chunked body streams in). ``path_limits`` give paths under a
      prefix their own limit (a provider's email with attachments is larger than any API request).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = tuple(path_limits)

    def _limit(self, path: str) -> int:
        return next((n for prefix, n in self.path_limits if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        given = b""
        declared = None
        for name, value in scope["headers"]:
            if name == CORRELATION_HEADER:
                given = value
            elif name == b"content-length":
                declared = value
        cid = given.decode("latin-1") if given else ""
        if not _VALID_CID.match(cid):
            cid = uuid.uuid4().hex
        token = correlation_id.set(cid)
        status = 500

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (CORRELATION_HEADER, cid.encode())]
            await send(message)

        try:
            max_bytes, received = self._limit(scope["path"]), 0
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                await self._reject(send_with_context, max_bytes)
                return

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > max_bytes:
                        raise _TooLarge(max_bytes)
                return message

            await self.app(scope, limited_receive, send_with_context)
        finally:
            correlation_id.reset(token)
            route = _route_template(scope)
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)

    async def _reject(self, send: Send, max_bytes: int) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "payload_too_large",
                    "message": f"request body exceeds {max_bytes} bytes",
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


class _TooLarge(HTTPException):
    """Raised from inside the body stream. An HTTPException, so that FastAPI's body parsing lets it through
    (it turns other errors into a 400) and the JSON error handler answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes")
