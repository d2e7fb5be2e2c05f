"""Web chat session tokens, the site-user identity check, and the session and message rules.

HMACs and JWTs are computed here with hmac and PyJWT directly, independently of the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from switchboard_common.events import Channel, CustomerIdentity, DeliveryState, IdentityKind
from switchboard_ingest.webchat import service, tokens
from switchboard_ingest.webchat.service import IdentityRejected, SessionRefused
from switchboard_ingest.webchat.tokens import TokenExpired, TokenInvalid, Visitor

SECRET = "token-secret-0123456789-0123456789"
IDENTITY_SECRET = "identity-secret-0123456789"
SESSION = uuid.UUID("6f1c1d2e-0a7b-4c9e-8d3f-2b5a6c7d8e9f")


def site_hash(user_id: str, secret: str = IDENTITY_SECRET) -> str:
    """What a site's server computes (Intercom's identity verification scheme)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def visitor(
    expires_in: timedelta = timedelta(hours=1),
    identity: str = "user:42",
    name: str | None = None,
    email: str | None = None,
) -> Visitor:
    expires_at = (datetime.now(UTC) + expires_in).replace(microsecond=0)
    return Visitor(SESSION, identity, expires_at, name=name, email=email)


def test_a_token_names_the_session_and_identity_and_reads_back() -> None:
    issued = visitor(name="Ada", email="ada@example.com")
    token = tokens.issue(SECRET, issued)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="webchat")
    assert claims["sub"] == str(SESSION)
    assert claims["idn"] == "user:42"
    assert claims["exp"] == int(issued.expires_at.timestamp())
    assert tokens.read(SECRET, token) == issued


def test_a_token_signed_with_another_secret_is_invalid() -> None:
    token = tokens.issue("another-secret-0123456789-0123456789", visitor())
    with pytest.raises(TokenInvalid):
        tokens.read(SECRET, token)


def test_a_tampered_token_is_invalid() -> None:
    header, payload, signature = tokens.issue(SECRET, visitor()).split(".")
    claims = jwt.decode(f"{header}.{payload}.{signature}", SECRET, algorithms=["HS256"], audience="webchat")
    forged_payload = jwt.encode({**claims, "idn": "user:1"}, "x" * 32, algorithm="HS256").split(".")[1]
    with pytest.raises(TokenInvalid):
        tokens.read(SECRET, f"{header}.{forged_payload}.{signature}")


def test_an_expired_token_is_expired() -> None:
    token = tokens.issue(SECRET, visitor(expires_in=timedelta(seconds=-5)))
    with pytest.raises(TokenExpired):
        tokens.read(SECRET, token)


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"aud": "agents"}, id="another audience"),
        pytest.param({"iss": "switchboard"}, id="another issuer"),
        pytest.param({"idn": None}, id="no identity"),
        pytest.param({"idn": 42}, id="identity not a string"),
        pytest.param({"sub": "not-a-uuid"}, id="session not a uuid"),
        pytest.param({"exp": None}, id="no expiry"),
    ],
)
def test_tokens_not_of_this_shape_are_invalid(claims: dict[str, object]) -> None:
    now = int(datetime.now(UTC).timestamp())
    base: dict[str, object] = {
        "iss": "switchboard-webchat",
        "aud": "webchat",
        "sub": str(SESSION),
        "idn": "visitor:x",
        "iat": now,
        "exp": now + 600,
    }
    token = jwt.encode(
        {k: v for k, v in {**base, **claims}.items() if v is not None}, SECRET, algorithm="HS256"
    )
    with pytest.raises(TokenInvalid):
        tokens.read(SECRET, token)


def test_an_unsigned_token_is_invalid() -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "switchboard-webchat", "aud": "webchat", "sub": str(SESSION), "idn": "user:1"}
    token = jwt.encode({**claims, "iat": now, "exp": now + 600}, "", algorithm="none")
    with pytest.raises(TokenInvalid):
        tokens.read(SECRET, token)


def test_garbage_is_invalid() -> None:
    with pytest.raises(TokenInvalid):
        tokens.read(SECRET, "not.a.token")


def test_identity_hash_is_hmac_sha256_hex_of_the_user_id() -> None:
    assert tokens.identity_hash(IDENTITY_SECRET, "42") == site_hash("42")
    assert tokens.verify_identity(IDENTITY_SECRET, "42", site_hash("42"))
    assert tokens.verify_identity(IDENTITY_SECRET, "42", site_hash("42").upper())
    assert not tokens.verify_identity(IDENTITY_SECRET, "43", site_hash("42"))
    assert not tokens.verify_identity(IDENTITY_SECRET, "42", site_hash("42", "other-secret"))
    assert not tokens.verify_identity(IDENTITY_SECRET, "42", "")


def new(
    user_id: str | None = None,
    user_hash: str | None = None,
    name: str | None = None,
    email: str | None = None,
) -> Visitor:
    return service.new_visitor(
        identity_secret=IDENTITY_SECRET,
        ttl_s=3600,
        user_id=user_id,
        user_hash=user_hash,
        name=name,
        email=email,
    )


def test_an_anonymous_visitor_is_known_by_their_session() -> None:
    anonymous = new(name="Grace")
    assert anonymous.identity == f"visitor:{anonymous.session_id}"
    assert not anonymous.verified
    assert anonymous.name == "Grace"
    assert new().session_id != anonymous.session_id


def test_a_verified_user_is_the_same_identity_in_every_session() -> None:
    first = new(user_id="42", user_hash=site_hash("42"), email="Ada@Example.com")
    second = new(user_id="42", user_hash=site_hash("42"))
    assert first.identity == second.identity == "user:42"
    assert first.session_id != second.session_id
    assert first.verified
    assert first.email == "ada@example.com"


@pytest.mark.parametrize("user_hash", [None, "", "00" * 32, site_hash("43")])
def test_a_missing_or_wrong_hash_is_rejected(user_hash: str | None) -> None:
    with pytest.raises(IdentityRejected):
        new(user_id="42", user_hash=user_hash)


def test_an_anonymous_visitor_cannot_claim_an_email() -> None:
    with pytest.raises(SessionRefused) as refused:
        new(email="ceo@example.com")
    assert refused.value.code == "email_requires_verified_user"


def test_a_hash_without_a_user_id_is_rejected() -> None:
    with pytest.raises(IdentityRejected):
        new(user_hash=site_hash("42"))


def test_a_user_id_without_an_identity_secret_is_rejected() -> None:
    with pytest.raises(IdentityRejected) as refused:
        service.new_visitor(
            identity_secret=None, ttl_s=60, user_id="42", user_hash=site_hash("42"), name=None, email=None
        )
    assert refused.value.code == "identity_verification_not_configured"


def test_the_session_lasts_its_ttl_in_whole_seconds() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    made = service.new_visitor(
        identity_secret=None, ttl_s=600, user_id=None, user_hash=None, name=None, email=None, now=now
    )
    assert made.expires_at == datetime(2026, 1, 2, 3, 14, 5, tzinfo=UTC)
    renewed = service.renewed(made, 1200, now=now)
    assert (renewed.session_id, renewed.identity) == (made.session_id, made.identity)
    assert renewed.expires_at == datetime(2026, 1, 2, 3, 24, 5, tzinfo=UTC)


def test_a_message_is_scoped_by_session_and_carries_a_verified_email() -> None:
    verified = visitor(name="Ada", email="ada@example.com")
    parsed = service.message(verified, "c-1", "Hello")
    assert parsed.channel is Channel.WEBCHAT
    assert parsed.external_id == f"{SESSION}:c-1"
    assert parsed.sender == CustomerIdentity(kind=IdentityKind.WEBCHAT, value="user:42")
    assert parsed.identities == (CustomerIdentity(kind=IdentityKind.EMAIL, value="ada@example.com"),)
    assert parsed.display_name == "Ada"
    anonymous = service.message(visitor(identity=f"visitor:{SESSION}"), "c-1", "Hello")
    assert anonymous.identities == ()


def test_a_read_report_names_the_stream_event() -> None:
    report = service.read_report(17)
    assert (report.channel, report.external_id, report.status) == (
        Channel.WEBCHAT,
        "webchat:17",
        DeliveryState.READ,
    )
