"""Web chat rules: who a new session speaks as, and how a visitor's message and read report become the same
canonical items every other channel produces (so they take the same group commit)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from switchboard_common.events import Channel, CustomerIdentity, DeliveryState, IdentityKind
from switchboard_ingest.channels.base import ParsedMessage, ParsedStatus
from switchboard_ingest.normalize import normalize_email
from switchboard_ingest.webchat import repository, tokens
from switchboard_ingest.webchat.sender import external_id
from switchboard_ingest.webchat.stream import WebchatHub
from switchboard_ingest.webchat.tokens import Visitor


class IdentityRejected(Exception):
    """The site's proof of its user is missing, wrong or cannot be checked here (answered 401 with
    ``code``)."""

    def __init__(self, message: str, code: str = "invalid_identity") -> None:
        super().__init__(message)
        self.code = code


class RateLimited(Exception):
    """Over a rate limit (answered 429 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``hits`` on ``key`` per window of ``window_s`` seconds."""

    key: str
    hits: int
    window_s: int


class SessionRefused(Exception):
    """The visitor may not have the session as asked (answered 403 with ``code``)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def new_visitor(
    *,
    identity_secret: str | None,
    ttl_s: int,
    user_id: str | None,
    user_hash: str | None,
    name: str | None,
    email: str | None,
    now: datetime | None = None,
) -> Visitor:
    """A new session's visitor: a verified site user (``user:<id>``, one identity across their devices and
    sessions), else an anonymous visitor known by this session only.

    An email is taken only from a verified user: it links the visitor to the customer of that address, and
    an anonymous visitor typing someone else's would join their thread.
    """
    session_id = uuid.uuid4()
    if user_id is None:
        if user_hash is not None:
            raise IdentityRejected("user_hash is given without user_id")
        if email is not None:
            raise SessionRefused(
                "an email is accepted only with a verified user (user_id and user_hash)",
                code="email_requires_verified_user",
            )
        identity = tokens.visitor_identity(session_id)
    else:
        if identity_secret is None:
            raise IdentityRejected(
                "this deployment does not verify site users (no identity secret is configured)",
                code="identity_verification_not_configured",
            )
        if user_hash is None or not tokens.verify_identity(identity_secret, user_id, user_hash):
            raise IdentityRejected("user_hash does not match user_id")
        identity = tokens.user_identity(user_id)
    return Visitor(
        session_id=session_id,
        identity=identity,
        expires_at=tokens.expiry(ttl_s, now),
        name=name,
        email=normalize_email(email) if email is not None else None,
    )


def renewed(visitor: Visitor, ttl_s: int, now: datetime | None = None) -> Visitor:
    """The same session and identity, with a new expiry."""
    return Visitor(
        visitor.session_id, visitor.identity, tokens.expiry(ttl_s, now), visitor.name, visitor.email
    )


def message(visitor: Visitor, client_message_id: str, text: str) -> ParsedMessage:
    """A visitor's message as the canonical inbound message. Its provider id is scoped by the session, so
    the widget's retry of one message is recognised and two sessions' ids never collide."""
    identities = (CustomerIdentity(kind=IdentityKind.EMAIL, value=visitor.email),) if visitor.email else ()
    return ParsedMessage(
        channel=Channel.WEBCHAT,
        external_id=f"{visitor.session_id}:{client_message_id}",
        sender=CustomerIdentity(kind=IdentityKind.WEBCHAT, value=visitor.identity),
        text=text,
        identities=identities,
        display_name=visitor.name,
    )


def read_report(seq: int) -> ParsedStatus:
    """The visitor saw reply ``seq``: the agent's thread shows it read."""
    return ParsedStatus(channel=Channel.WEBCHAT, external_id=external_id(seq), status=DeliveryState.READ)


async def record_session(hub: WebchatHub, visitor: Visitor) -> None:
    """Keep the record of a session issued or refreshed."""
    async with hub.unit_of_work() as session:
        await repository.save_session(
            session, visitor.session_id, visitor.identity, visitor.name, visitor.expires_at
        )


async def owns_reply(hub: WebchatHub, visitor: Visitor, seq: int) -> bool:
    """Whether event ``seq`` is a reply to this visitor's identity (no one reports another's as read)."""
    async with hub.unit_of_work() as session:
        return await repository.owns_event(session, visitor.identity, seq)


async def admit(hub: WebchatHub, limits: Sequence[Limit]) -> None:
    """Count this request against each limit, in one statement; raises ``RateLimited`` if any is exceeded.

    A refused request counts too, so a client hammering past its limit stays refused until its window
    ends rather than getting every other request through."""
    async with hub.unit_of_work() as session:
        counts = await repository.count_hits(session, [x.key for x in limits], [x.window_s for x in limits])
    allowed = {x.key: x.hits for x in limits}
    over = [c for c in counts if c.hits > allowed[c.key]]
    if over:
        raise RateLimited(
            "too many requests: retry later", retry_after_s=max(1, *(c.retry_after_s for c in over))
        )
