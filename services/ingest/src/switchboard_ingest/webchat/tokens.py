"""Visitors' session tokens and the identity check of signed-in users.

A token is a JWT (HS256, ``webchat_token_secret``) naming the session and the identity the visitor speaks
as; it is self-contained, so posting a message or opening the stream costs no database read. Its own
audience and issuer keep it from ever being taken for an agent's token (which is signed with another
secret anyway). A site proves who its signed-in user is with ``user_hash = hex(HMAC-SHA256(
webchat_identity_secret, user_id))``, computed on its server, the scheme Intercom and Crisp use.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ISSUER = "switchboard-webchat"
AUDIENCE = "webchat"
_ALGORITHM = "HS256"
USER_PREFIX = "user:"
VISITOR_PREFIX = "visitor:"


class TokenInvalid(Exception):
    """Forged, malformed or not a web chat token (answered 401)."""


class TokenExpired(TokenInvalid):
    """Well signed, but past its expiry (answered 401: the widget starts or refreshes a session)."""


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who a token speaks for: ``identity`` is the web chat identity's value (``user:<site user id>`` when
    the site vouched for its user, else ``visitor:<session id>``); ``email`` only for verified users."""

    session_id: uuid.UUID
    identity: str
    expires_at: datetime
    name: str | None = None
    email: str | None = None

    @property
    def verified(self) -> bool:
        return self.identity.startswith(USER_PREFIX)


def user_identity(user_id: str) -> str:
    return USER_PREFIX + user_id


def visitor_identity(session_id: uuid.UUID) -> str:
    return VISITOR_PREFIX + str(session_id)


def identity_hash(secret: str, user_id: str) -> str:
    """What a site computes on its server to vouch for ``user_id``."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def verify_identity(secret: str, user_id: str, user_hash: str) -> bool:
    """Constant time; the hex digest is accepted in either case."""
    return hmac.compare_digest(identity_hash(secret, user_id).encode(), user_hash.lower().encode())


def issue(secret: str, visitor: Visitor, issued_at: datetime | None = None) -> str:
    now = issued_at or datetime.now(UTC)
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(visitor.session_id),
        "idn": visitor.identity,
        "iat": int(now.timestamp()),
        "exp": int(visitor.expires_at.timestamp()),
    }
    if visitor.name is not None:
        claims["name"] = visitor.name
    if visitor.email is not None:
        claims["email"] = visitor.email
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def read(secret: str, token: str) -> Visitor:
    """The visitor a token names; ``TokenExpired`` or ``TokenInvalid`` otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "idn", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("session expired") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenInvalid("invalid session token") from exc
    try:
        session_id = uuid.UUID(claims["sub"])
        identity, name, email = claims["idn"], claims.get("name"), claims.get("email")
        if not isinstance(identity, str) or not all(isinstance(v, str | None) for v in (name, email)):
            raise TypeError("claims of the wrong type")
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TokenInvalid("invalid session token") from exc
    return Visitor(session_id, identity, expires_at, name=name, email=email)


def expiry(ttl_s: int, now: datetime | None = None) -> datetime:
    # Whole seconds: the token's ``exp`` has no fractions, and the answer's expires_at must equal it.
    return (now or datetime.now(UTC)).replace(microsecond=0) + timedelta(seconds=ttl_s)
