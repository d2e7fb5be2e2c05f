"""Neutral domain errors. Services raise these; the HTTP layer maps them to 404/409/403/503 JSON and the
consumer runner maps them to a retry (``Unavailable``) or the DLQ (the others). A service never imports
anything from ``http``."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of the errors a service raises about the request or event it was given."""

    code = "error"

    def __init__(self, message: str, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # JSON-able facts the client can act on (the customer who owns an identity, say).
        self.details = details


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The request contradicts the current state (a taken email, an id reused for other content)."""

    code = "conflict"


class Invalid(DomainError):
    """The request is well formed but asks for something that cannot be (a snooze in the past, a tag
    outside the catalogue)."""

    code = "invalid"


class Forbidden(DomainError):
    code = "forbidden"


class Unavailable(DomainError):
    """A dependency cannot be reached right now; retrying later can succeed."""

    code = "unavailable"
