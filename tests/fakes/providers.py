"""Local fake provider APIs (WhatsApp Cloud, Messenger/Instagram Send API, Twilio Messages and Calls, Mailgun
messages) for delivery tests.

Each route checks authentication and the request shape the way the real provider does and answers with the
provider's own success and error bodies, so the dispatcher's parsing and retry decisions are exercised against
realistic responses. Shapes follow the providers' docs:

- WhatsApp: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages and
  https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes (Graph error envelope, code 190
  for a bad token, 100 for an invalid parameter, 80007/130429 for rate limits).
- Messenger: https://developers.facebook.com/docs/messenger-platform/reference/send-api
- Twilio: https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource and
  https://www.twilio.com/docs/api/errors (20003 Authenticate, 21211/21602/21603/21604, 20429).
- Mailgun: https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages (Basic auth
  ``api:<key>``, form from/to/subject/text or html, ``h:`` headers; 200 ``{"id", "message"}``; errors as
  ``{"message"}``; a wrong key is 401 "Forbidden").

The server runs in its own thread and event loop, so it serves sync and async tests alike.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard_devstack.ports import free_port

ROUTES = ("whatsapp", "messenger", "twilio", "twilio-calls", "mailgun")

_GRAPH_VERSION = re.compile(r"^v\d+\.\d+$")
_WA_TO = re.compile(r"^\+?\d{5,15}$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
_MESSAGING_TYPES = {"RESPONSE", "UPDATE", "MESSAGE_TAG"}
_WA_TEXT_MAX = 4096
_MESSENGER_TEXT_MAX = 2000
_TWILIO_BODY_MAX = 1600
_TWILIO_API_VERSION = "2010-04-01"


@dataclass(frozen=True)
class Recorded:
    """One request the fake received, with what it answered."""

    route: str  # "whatsapp" | "messenger" | "twilio" | "unknown"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any  # parsed JSON body, None when the body is not JSON
    form: dict[str, str] | None  # parsed form body (last value per key), None when not form-encoded
    form_items: tuple[tuple[str, str], ...]  # every form pair in order (repeated keys such as MediaUrl)
    status: int
    response: Any  # the JSON body answered
    provider_id: str | None  # wamid / Messenger mid / Twilio SM sid, when one was issued
    # False when the client went away before a delayed answer was sent (e.g. its timeout fired): the provider
    # still processed the request, which is exactly the duplicate-send hazard a timeout test cares about.
    delivered: bool = True

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class _Fault:
    status: int
    retry_after: str | None
    body: dict[str, Any] | None


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: list[Recorded] = field(default_factory=list)
    faults: dict[str, deque[_Fault]] = field(default_factory=dict)
    delays: dict[str, deque[float]] = field(default_factory=dict)


_Handler = Callable[[Request, bytes], tuple[int, Any, str | None]]


class _Reject(Exception):
    """A provider-shaped error answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(15)


def graph_error(
    code: int,
    message: str,
    *,
    type_: str = "OAuthException",
    details: str | None = None,
    whatsapp: bool = False,
) -> dict[str, Any]:
    """The Graph API error envelope; the Cloud API (WhatsApp) adds error_data with the details."""
    error: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if whatsapp:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details or message}
    error["fbtrace_id"] = _fbtrace_id()
    return {"error": error}


def twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _graph_invalid(details: str, *, whatsapp: bool) -> _Reject:
    # Since v16 the Cloud API titles every code-100 error "Invalid parameter" and moves the reason to
    # error_data.details; Messenger keeps the reason in the message.
    message = "(#100) Invalid parameter" if whatsapp else f"(#100) {details}"
    return _Reject(400, graph_error(100, message, details=details, whatsapp=whatsapp))


def _graph_unauthorized(whatsapp: bool) -> _Reject:
    return _Reject(
        401,
        graph_error(190, "Invalid OAuth access token - Cannot parse access token", whatsapp=whatsapp),
    )


def _default_fault_body(route: str, status: int) -> dict[str, Any]:
    whatsapp = route == "whatsapp"
    if route == "mailgun":
        return {
            400: {"message": "to parameter is not a valid address. please check documentation"},
            429: {"message": "Too many requests"},
        }.get(status, {"message": "Internal Server Error"})
    if route in ("twilio", "twilio-calls"):
        code, message = {
            400: (21610, "Attempt to send to unsubscribed recipient"),
            401: (20003, "Authenticate"),
            403: (20403, "Forbidden"),
            404: (20404, "The requested resource was not found"),
            429: (20429, "Too Many Requests"),
            503: (20503, "Service Unavailable"),
        }.get(status, (20500, "Internal Server Error"))
        return twilio_error(code, message, status)
    if status == 429:
        if whatsapp:
            return graph_error(
                80007,
                "(#80007) There have been too many calls to this WhatsApp Business account.",
                whatsapp=True,
            )
        return graph_error(4, "(#4) Application request limit reached")
    if status >= 500:
        return graph_error(
            2, "(#2) Service temporarily unavailable", details="Temporary due to downtime", whatsapp=whatsapp
        )
    if status == 401:
        return graph_error(190, "Invalid OAuth access token - Cannot parse access token", whatsapp=whatsapp)
    if status == 403:
        return graph_error(10, "(#10) Permission denied", whatsapp=whatsapp)
    if whatsapp:
        # A permanent per-recipient failure, e.g. the user cannot receive WhatsApp messages.
        return graph_error(
            131026,
            "(#131026) Message undeliverable",
            details="Unable to deliver message",
            whatsapp=True,
        )
    return graph_error(100, "(#100) No matching user found")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential:
        return credential.strip()
    return request.query_params.get("access_token")


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _is_form(request: Request) -> bool:
    ctype = request.headers.get("content-type", "")
    return ctype.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


class FakeProviders:
    """The three provider APIs on one local server; ``base_url`` stands in for each provider's host."""

    def __init__(
        self,
        *,
        whatsapp_token: str,
        whatsapp_phone_number_id: str,
        messenger_token: str,
        twilio_account_sid: str,
        twilio_auth_token: str,
        mailgun_api_key: str = "mailgun-api-key-1",
        mailgun_domain: str = "mg.example.com",
    ) -> None:
        self.mailgun_api_key = mailgun_api_key
        self.mailgun_domain = mailgun_domain
        self.whatsapp_token = whatsapp_token
        self.whatsapp_phone_number_id = whatsapp_phone_number_id
        self.messenger_token = messenger_token
        self.twilio_account_sid = twilio_account_sid
        self.twilio_auth_token = twilio_auth_token
        self._state = _State()
        self._port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/2010-04-01/Accounts/{sid}/Messages.json", self._twilio, methods=["POST"]),
                Route("/2010-04-01/Accounts/{sid}/Calls.json", self._twilio_calls, methods=["POST"]),
                Route("/v3/{domain}/messages", self._mailgun, methods=["POST"]),
                Route("/{version}/{node}/messages", self._graph, methods=["POST"]),
                Route("/{path:path}", self._unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            ]
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self, timeout: float = 10.0) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self._port,
            log_config=None,  # leave the test process's logging configuration alone
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,  # a delayed answer must not hold up the test's teardown
            lifespan="off",
            ws="none",
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fake providers did not start on port {self._port}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeProviders:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeProviders:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # --- test controls -----------------------------------------------------------------------------

    def requests(self, route: str | None = None) -> list[Recorded]:
        """Every request received so far (accepted or not), oldest first; optionally one route's only."""
        with self._state.lock:
            return [r for r in self._state.records if route is None or r.route == route]

    def sent(self, route: str) -> list[Recorded]:
        """The requests on ``route`` that the provider accepted (2xx)."""
        return [r for r in self.requests(route) if r.ok]

    def fail_next(
        self,
        route: str,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next ``times`` valid (authenticated, well-formed) requests on ``route`` with ``status``."""
        _check_route(route)
        with self._state.lock:
            queue = self._state.faults.setdefault(route, deque())
            queue.extend(_Fault(status, retry_after, body) for _ in range(times))

    def delay_next(self, route: str, seconds: float, *, times: int = 1) -> None:
        """Hold the answer to the next ``times`` requests on ``route`` for ``seconds`` (or until the client
        disconnects)."""
        _check_route(route)
        with self._state.lock:
            self._state.delays.setdefault(route, deque()).extend([seconds] * times)

    def reset(self) -> None:
        """Forget recorded requests and pending scripted failures and delays."""
        with self._state.lock:
            self._state.records.clear()
            self._state.faults.clear()
            self._state.delays.clear()

    async def wait_for(self, route: str, count: int, timeout: float = 10.0) -> list[Recorded]:
        """Poll until ``count`` successful (2xx, delivered) requests were recorded on ``route``."""
        _check_route(route)
        deadline = time.monotonic() + timeout
        while True:
            done = [r for r in self.requests(route) if r.ok and r.delivered]
            if len(done) >= count:
                return done
            if time.monotonic() > deadline:
                seen = [(r.status, r.path) for r in self.requests(route)]
                raise AssertionError(
                    f"timed out waiting for {count} successful {route} request(s); got {len(done)}; seen {seen}"
                )
            await asyncio.sleep(0.02)

    # --- routes ------------------------------------------------------------------------------------

    async def _graph(self, request: Request) -> Response:
        # /me/messages is the Messenger/Instagram Send API; /{phone-number-id}/messages is WhatsApp Cloud.
        route = "messenger" if request.path_params["node"] == "me" else "whatsapp"
        handler = self._messenger if route == "messenger" else self._whatsapp
        return await self._handle(route, request, handler)

    async def _twilio(self, request: Request) -> Response:
        return await self._handle("twilio", request, self._twilio_create)

    async def _unknown(self, request: Request) -> Response:
        body = await request.body()
        answer = {"error": f"fake providers: no route for {request.method} {request.url.path}"}
        self._record("unknown", request, body, 404, answer, None, delivered=True)
        return JSONResponse(answer, status_code=404)

    async def _handle(self, route: str, request: Request, handler: _Handler) -> Response:
        body = await request.body()
        provider_id: str | None = None
        headers: dict[str, str] = {}
        try:
            status, answer, provider_id = handler(request, body)
            fault = self._take(self._state.faults, route)
            if fault is not None:
                status, provider_id = fault.status, None
                answer = fault.body if fault.body is not None else _default_fault_body(route, fault.status)
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
        except _Reject as rejection:
            status, answer = rejection.status, rejection.body
        if status == 401:
            headers["WWW-Authenticate"] = (
                'Basic realm="Twilio API"'
                if route in ("twilio", "twilio-calls")
                else 'Basic realm="MG API"'
                if route == "mailgun"
                else 'OAuth "Facebook Platform" "invalid_token" "Invalid OAuth access token"'
            )
        delivered = True
        delay = self._take(self._state.delays, route)
        if delay is not None:
            delivered = not await _wait_or_disconnect(request, delay)
        self._record(route, request, body, status, answer, provider_id, delivered=delivered)
        return JSONResponse(answer, status_code=status, headers=headers)

    def _whatsapp(self, request: Request, body: bytes) -> tuple[int, Any, str | None]:
        if not _GRAPH_VERSION.match(request.path_params["version"]):
            raise _Reject(400, graph_error(2635, "(#2635) Unknown API version", whatsapp=True))
        token = _bearer(request)
        if token is None or not secrets.compare_digest(token, self.whatsapp_token):
            raise _graph_unauthorized(whatsapp=True)
        node = request.path_params["node"]
        if node != self.whatsapp_phone_number_id:
            raise _Reject(
                400,
                graph_error(
                    100,
                    f"Unsupported post request. Object with ID '{node}' does not exist, cannot be loaded due "
                    "to missing permissions, or does not support this operation.",
                    type_="GraphMethodException",
                    whatsapp=True,
                ),
            )
        payload = _parse_json(body)
        if not isinstance(payload, dict):
            raise _graph_invalid("Request body must be a JSON object", whatsapp=True)
        if payload.get("messaging_product") != "whatsapp":
            raise _graph_invalid("The parameter messaging_product is required.", whatsapp=True)
        to = payload.get("to")
        if not isinstance(to, str) or not _WA_TO.match(to):
            raise _graph_invalid("The parameter to is required and must be a phone number.", whatsapp=True)
        if payload.get("recipient_type", "individual") != "individual":
            raise _graph_invalid("Param recipient_type must be individual.", whatsapp=True)
        if payload.get("type", "text") != "text":
            raise _graph_invalid("This fake only accepts type text.", whatsapp=True)
        text = payload.get("text")
        text_body = text.get("body") if isinstance(text, dict) else None
        if not isinstance(text_body, str) or not text_body.strip():
            raise _graph_invalid("The parameter text['body'] is required.", whatsapp=True)
        if len(text_body) > _WA_TEXT_MAX:
            raise _graph_invalid(
                f"Param text['body'] must be at most {_WA_TEXT_MAX} characters long.", whatsapp=True
            )
        wamid = "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()
        answer = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
            "messages": [{"id": wamid}],
        }
        return 200, answer, wamid

    def _messenger(self, request: Request, body: bytes) -> tuple[int, Any, str | None]:
        if not _GRAPH_VERSION.match(request.path_params["version"]):
            raise _Reject(400, graph_error(2635, "(#2635) Unknown API version"))
        token = _bearer(request)
        if token is None or not secrets.compare_digest(token, self.messenger_token):
            raise _graph_unauthorized(whatsapp=False)
        payload: Any
        if _is_form(request):
            # The documented curl form: each parameter is itself a JSON value.
            fields = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
            payload = {k: _parse_json(v.encode()) if k != "messaging_type" else v for k, v in fields.items()}
        else:
            payload = _parse_json(body)
        if not isinstance(payload, dict):
            raise _graph_invalid("Request body must be a JSON object", whatsapp=False)
        recipient = payload.get("recipient")
        psid = recipient.get("id") if isinstance(recipient, dict) else None
        if not isinstance(psid, str) or not psid:
            raise _graph_invalid("param recipient must be non-empty.", whatsapp=False)
        messaging_type = payload.get("messaging_type")
        if messaging_type not in _MESSAGING_TYPES:
            raise _graph_invalid(
                "param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}", whatsapp=False
            )
        if messaging_type == "MESSAGE_TAG" and not payload.get("tag"):
            raise _graph_invalid("param tag is required with messaging_type MESSAGE_TAG", whatsapp=False)
        message = payload.get("message")
        text = message.get("text") if isinstance(message, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise _graph_invalid(
                "param message[text] must be a non-empty UTF-8 encoded string", whatsapp=False
            )
        if len(text) > _MESSENGER_TEXT_MAX:
            raise _graph_invalid(
                f"Length of param message[text] must be less than or equal to {_MESSENGER_TEXT_MAX}",
                whatsapp=False,
            )
        mid = "m_" + secrets.token_urlsafe(32)
        return 200, {"recipient_id": psid, "message_id": mid}, mid

    async def _twilio_calls(self, request: Request) -> Response:
        return await self._handle("twilio-calls", request, self._twilio_call)

    def _twilio_call(self, request: Request, body: bytes) -> tuple[int, Any, str | None]:
        """Twilio's Calls API: Basic auth, form To (E.164), From, and Twiml or Url; 201 with the call."""
        self._twilio_authenticate(request)
        params = (
            dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
            if _is_form(request)
            else {}
        )
        to, sender = params.get("To", ""), params.get("From", "")
        if not _E164.match(to):
            raise _Reject(400, twilio_error(21211, f"Invalid 'To' Phone Number: {to}", 400))
        if not sender:
            raise _Reject(400, twilio_error(21603, "A 'From' phone number is required.", 400))
        if not params.get("Twiml") and not params.get("Url"):
            raise _Reject(400, twilio_error(21205, "Url or Twiml is required.", 400))
        call_sid = "CA" + secrets.token_hex(16)
        sid = request.path_params["sid"]
        answer = {
            "account_sid": sid,
            "sid": call_sid,
            "to": to,
            "from": sender,
            "status": "queued",
            "direction": "outbound-api",
            "uri": f"/{_TWILIO_API_VERSION}/Accounts/{sid}/Calls/{call_sid}.json",
        }
        return 201, answer, call_sid

    async def _mailgun(self, request: Request) -> Response:
        return await self._handle("mailgun", request, self._mailgun_send)

    def _mailgun_send(self, request: Request, body: bytes) -> tuple[int, Any, str | None]:
        """Mailgun's messages API: Basic auth api:<key>, the domain's path, form from, to (addresses),
        subject, text or html; 200 with the Message-ID (``h:Message-ID`` when given, as Mailgun keeps it)."""
        credentials = _basic(request)
        if (
            credentials is None
            or credentials[0] != "api"
            or not secrets.compare_digest(credentials[1], self.mailgun_api_key)
        ):
            raise _Reject(401, {"message": "Invalid private key"})
        domain = request.path_params["domain"]
        if domain != self.mailgun_domain:
            raise _Reject(404, {"message": f"Domain not found: {domain}"})
        params = (
            dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
            if _is_form(request)
            else {}
        )
        for name in ("from", "to", "subject"):
            if not params.get(name):
                raise _Reject(400, {"message": f"{name} parameter is missing"})
        if not params.get("text") and not params.get("html"):
            raise _Reject(400, {"message": "Need at least one of 'text', 'html', 'amp-html' or 'template'"})
        for name in ("from", "to"):
            if not _EMAIL.search(params[name]):
                raise _Reject(
                    400, {"message": f"{name} parameter is not a valid address. please check documentation"}
                )
        message_id = params.get("h:Message-ID") or f"<{secrets.token_hex(8)}@{domain}>"
        return 200, {"id": message_id, "message": "Queued. Thank you."}, message_id

    def _twilio_authenticate(self, request: Request) -> None:
        credentials = _basic(request)
        sid = request.path_params["sid"]
        if (
            credentials is None
            or not secrets.compare_digest(credentials[0], self.twilio_account_sid)
            or not secrets.compare_digest(credentials[1], self.twilio_auth_token)
            or sid != self.twilio_account_sid
        ):
            raise _Reject(401, twilio_error(20003, "Authenticate", 401))

    def _twilio_create(self, request: Request, body: bytes) -> tuple[int, Any, str | None]:
        self._twilio_authenticate(request)
        sid = request.path_params["sid"]
        items = parse_qsl(body.decode(errors="replace"), keep_blank_values=True) if _is_form(request) else []
        params = dict(items)
        to = params.get("To", "")
        sender = params.get("From", "")
        service = params.get("MessagingServiceSid", "")
        text = params.get("Body", "")
        media = [v for k, v in items if k == "MediaUrl"]
        if not to:
            raise _Reject(400, twilio_error(21604, "A 'To' phone number is required.", 400))
        if not _E164.match(to):
            raise _Reject(400, twilio_error(21211, f"Invalid 'To' Phone Number: {to}", 400))
        if not sender and not service:
            raise _Reject(400, twilio_error(21603, "A 'From' phone number is required.", 400))
        if not text and not media:
            raise _Reject(400, twilio_error(21602, "Message body is required.", 400))
        if len(text) > _TWILIO_BODY_MAX:
            raise _Reject(
                400,
                twilio_error(21617, "The concatenated message body exceeds the 1600 character limit.", 400),
            )
        message_sid = ("MM" if media else "SM") + secrets.token_hex(16)
        now = email.utils.format_datetime(datetime.now(UTC))  # RFC 2822, as Twilio writes dates
        uri = f"/{_TWILIO_API_VERSION}/Accounts/{sid}/Messages/{message_sid}"
        answer = {
            "account_sid": sid,
            "api_version": _TWILIO_API_VERSION,
            "body": text,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": str(len(media)),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": message_sid,
            # A Messaging Service without a From picks the sender later: Twilio answers "accepted" then.
            "status": "queued" if sender else "accepted",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        return 201, answer, message_sid

    # --- internals ---------------------------------------------------------------------------------

    def _take(self, queues: dict[str, deque[Any]], route: str) -> Any:
        with self._state.lock:
            queue = queues.get(route)
            return queue.popleft() if queue else None

    def _record(
        self,
        route: str,
        request: Request,
        body: bytes,
        status: int,
        answer: Any,
        provider_id: str | None,
        *,
        delivered: bool,
    ) -> None:
        items = (
            tuple(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
            if _is_form(request)
            else ()
        )
        record = Recorded(
            route=route,
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=_parse_json(body) if body else None,
            form=dict(items) if _is_form(request) else None,
            form_items=items,
            status=status,
            response=answer,
            provider_id=provider_id,
            delivered=delivered,
        )
        with self._state.lock:
            self._state.records.append(record)


def _check_route(route: str) -> None:
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")


async def _wait_or_disconnect(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; True if the client disconnected meanwhile (its answer will never arrive)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
    return await request.is_disconnected()
