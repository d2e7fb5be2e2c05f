"""Raw RFC 5322 mail in: the stdlib parser, mail-parser-reply and html2text behind ``parse_mime``, against
messages written the way real mail clients write them (line endings CRLF, as on the wire)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard_common.events import AttachmentKind, Channel, CustomerIdentity, IdentityKind
from switchboard_ingest.channels.base import PayloadInvalid, SignatureInvalid, WebhookRequest
from switchboard_ingest.channels.email import MimeChannel, parse_mime, shown_text

RECEIVED = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def wire(text: str, encoding: str = "utf-8") -> bytes:
    return text.lstrip("\n").replace("\n", "\r\n").encode(encoding)


# Thunderbird: multipart/alternative, plain text first.
ALTERNATIVE = wire("""
From: Jane Doe <Jane.Doe@Example.org>
To: Support <support@example.com>
Subject: Order 1234 has not arrived
Date: Tue, 4 Mar 2025 10:15:00 +0100
Message-ID: <7a1c2e4f-1234-4d2b-9e0a-3c5d6e7f8a9b@example.org>
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
Content-Type: multipart/alternative;
 boundary="------------0QvT2j3pY6bzQmH1c5Xk8F9a"

This is a multi-part message in MIME format.
--------------0QvT2j3pY6bzQmH1c5Xk8F9a
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: 7bit

Hello,

my order 1234 was due on Friday and has not arrived. Can you check?

--------------0QvT2j3pY6bzQmH1c5Xk8F9a
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: 7bit

<html><body><p>Hello,</p><p>my order <b>1234</b> was due on Friday and has not arrived.</p></body></html>

--------------0QvT2j3pY6bzQmH1c5Xk8F9a--
""")

# A web shop's contact form mailer: HTML only, quoted-printable.
HTML_ONLY = wire("""
From: "Shop Contact Form" <noreply+form@shop.example.net>
To: support@example.com
Subject: Contact form: delivery question
Date: Tue, 04 Mar 2025 09:01:02 GMT
Message-ID: <form-88231@shop.example.net>
MIME-Version: 1.0
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

<!DOCTYPE html><html><head><style>p {color: #333}</style></head><body>
<h2>New message</h2>
<p>Where is my parcel? The tracking page at <a href=3D"https://track.example.n=
et/ZX81">the carrier</a> shows nothing.</p>
<p>Thanks &amp; regards,<br>Ren=C3=A9e</p>
</body></html>
""")

# Gmail: a reply above the quote, a "-- " signature, the quote introduced by "On ... wrote:".
GMAIL_REPLY = wire("""
MIME-Version: 1.0
Date: Tue, 4 Mar 2025 11:42:17 +0100
References: <first-0001@example.org> <reply-0002@support.example.com>
In-Reply-To: <reply-0002@support.example.com>
Message-ID: <CAF=7mA3xQ+ZK1b9nY0@mail.gmail.com>
Subject: Re: Order 1234 has not arrived
From: Jane Doe <jane.doe@gmail.com>
To: Support <support@example.com>
Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f60718"

--000000000000a1b2c3d4e5f60718
Content-Type: text/plain; charset="UTF-8"

Yes, please send a replacement to the same address.

--\x20
Jane Doe
+44 20 7946 0958

On Tue, Mar 4, 2025 at 11:05 AM Support <support@example.com> wrote:

> Hello Jane,
>
> the parcel was lost. Shall we send a replacement?
>
> Kind regards, Support
>

--000000000000a1b2c3d4e5f60718
Content-Type: text/html; charset="UTF-8"

<div dir="ltr">Yes, please send a replacement to the same address.<br></div>
--000000000000a1b2c3d4e5f60718--
""")

# Outlook: the reply, then a line of underscores and the From/Sent/To/Subject block of the earlier mail.
OUTLOOK_REPLY = wire("""
From: "Smith, John" <John.Smith@corp.example.com>
To: "support@example.com" <support@example.com>
Subject: RE: Invoice INV-2291
Thread-Topic: Invoice INV-2291
Thread-Index: AQHZx1b2c3d4e5f6
Date: Tue, 4 Mar 2025 10:30:00 +0000
Message-ID: <AM0PR01MB1234ABCD@AM0PR01MB1234.eurprd01.prod.outlook.com>
In-Reply-To: <inv-2291@support.example.com>
References: <inv-2291@support.example.com>
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

The invoice is paid, please check again.

John

________________________________
From: Support <support@example.com>
Sent: Monday, March 3, 2025 4:12 PM
To: Smith, John <John.Smith@corp.example.com>
Subject: Invoice INV-2291

Dear John, invoice INV-2291 is overdue.
""")

# An Apple Mail message with a PDF, a Word document and an inline picture (multipart/related).
ATTACHMENTS = wire("""
From: Jane Doe <jane@example.org>
To: support@example.com
Subject: Photos of the damage
Date: Tue, 4 Mar 2025 10:00:00 +0100
Message-Id: <D2E1C0B9-5A4F-4E3D-9C8B-7A6F5E4D3C2B@example.org>
Mime-Version: 1.0 (Mac OS X Mail 16.0)
Content-Type: multipart/mixed; boundary="Apple-Mail=_outer"

--Apple-Mail=_outer
Content-Type: multipart/related; type="text/html"; boundary="Apple-Mail=_related"

--Apple-Mail=_related
Content-Type: text/plain; charset=us-ascii

The box arrived crushed, see the picture and the delivery note.

--Apple-Mail=_related
Content-Transfer-Encoding: base64
Content-Disposition: inline; filename=IMG_0042.jpeg
Content-Type: image/jpeg; name="IMG_0042.jpeg"
Content-Id: <img42@example.org>

/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAP//////////
--Apple-Mail=_related--

--Apple-Mail=_outer
Content-Disposition: attachment; filename="delivery note.pdf"
Content-Type: application/pdf; name="delivery note.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IK
--Apple-Mail=_outer
Content-Disposition: attachment;
 filename*=utf-8''Schadensbericht%20M%C3%BCller.docx
Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document
Content-Transfer-Encoding: base64

UEsDBBQABgAIAAAAIQA=
--Apple-Mail=_outer--
""")

# An older European client: ISO-8859-1 throughout, the subject and name as RFC 2047 encoded words, the
# body 8bit (bytes that are not UTF-8).
LATIN1 = wire(
    """
From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg.mueller@example.de>
To: support@example.com
Subject: =?ISO-8859-1?Q?Bestellung_f=FCr_M=FCnchen_-_Lieferverz=F6gerung?=
Date: Tue, 4 Mar 2025 08:00:00 +0100
Message-ID: <20250304080000.4711@example.de>
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: 8bit

Grüße aus München, die Lieferung für Straße 5 fehlt.
""",
    encoding="iso-8859-1",
)


def test_multipart_alternative_shows_the_plain_text_part() -> None:
    message = parse_mime(ALTERNATIVE, received_at=RECEIVED)

    assert message.channel is Channel.EMAIL
    assert message.external_id == "7a1c2e4f-1234-4d2b-9e0a-3c5d6e7f8a9b@example.org"
    assert message.sender == CustomerIdentity(kind=IdentityKind.EMAIL, value="jane.doe@example.org")
    assert message.display_name == "Jane Doe"
    assert message.subject == "Order 1234 has not arrived"
    assert message.sent_at == datetime(2025, 3, 4, 9, 15, tzinfo=UTC)
    assert message.text == "Hello,\n\nmy order 1234 was due on Friday and has not arrived. Can you check?"
    assert "<b>" not in (message.original_text or "")
    assert message.attachments == ()  # the HTML alternative is the same body, not an attachment
    assert message.thread_refs == ()


def test_html_only_mail_is_shown_as_text() -> None:
    message = parse_mime(HTML_ONLY, received_at=RECEIVED)

    assert message.display_name == "Shop Contact Form"
    assert message.sent_at == datetime(2025, 3, 4, 9, 1, 2, tzinfo=UTC)
    original = message.original_text or ""
    assert "<" not in original.replace("](", "")  # no tags left
    assert "color: #333" not in original  # style sheets are not text
    assert "Where is my parcel?" in original
    assert "[the carrier](https://track.example.net/ZX81)" in original  # links kept, QP soft breaks undone
    assert "Renée" in original  # UTF-8 in quoted-printable, entities decoded
    assert message.text == (
        "## New message\n\nWhere is my parcel? The tracking page at [the carrier]"
        "(https://track.example.net/ZX81) shows nothing.\n\nThanks & regards,\nRenée"
    )


def test_gmail_reply_shows_only_the_new_text() -> None:
    message = parse_mime(GMAIL_REPLY, received_at=RECEIVED)

    assert message.text == "Yes, please send a replacement to the same address."
    original = message.original_text or ""
    assert "Jane Doe\n+44 20 7946 0958" in original  # the signature is kept in the original
    assert "> the parcel was lost. Shall we send a replacement?" in original  # and so is the quote
    assert message.subject == "Re: Order 1234 has not arrived"
    assert message.external_id == "CAF=7mA3xQ+ZK1b9nY0@mail.gmail.com"


def test_outlook_reply_stops_at_the_quoted_header_block() -> None:
    message = parse_mime(OUTLOOK_REPLY, received_at=RECEIVED)

    assert message.text == "The invoice is paid, please check again.\n\nJohn"
    assert "Dear John, invoice INV-2291 is overdue." in (message.original_text or "")
    assert message.sender.value == "john.smith@corp.example.com"
    assert message.display_name == "Smith, John"
    assert message.thread_refs == ("inv-2291@support.example.com",)


def test_thread_refs_are_in_reply_to_then_references_newest_first_each_once() -> None:
    message = parse_mime(GMAIL_REPLY, received_at=RECEIVED)

    assert message.thread_refs == ("reply-0002@support.example.com", "first-0001@example.org")

    folded = wire("""
From: jane@example.org
Message-ID: <m4@example.org>
In-Reply-To: <m3@example.com>
References: <m1@example.org>
 <m2@example.com>
\t<m3@example.com>

Thanks!
""")
    assert parse_mime(folded).thread_refs == ("m3@example.com", "m2@example.com", "m1@example.org")


def test_attachments_are_references_with_kind_filename_and_part_index() -> None:
    message = parse_mime(ATTACHMENTS, received_at=RECEIVED)
    prefix = "D2E1C0B9-5A4F-4E3D-9C8B-7A6F5E4D3C2B@example.org/"

    assert message.text == "The box arrived crushed, see the picture and the delivery note."
    assert [(a.kind, a.filename, a.content_type) for a in message.attachments] == [
        (AttachmentKind.IMAGE, "IMG_0042.jpeg", "image/jpeg"),
        (AttachmentKind.DOCUMENT, "delivery note.pdf", "application/pdf"),
        (
            AttachmentKind.DOCUMENT,
            "Schadensbericht Müller.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    ]
    # Parts counted depth first from the root: 0 mixed, 1 related, 2 text, 3 image, 4 pdf, 5 docx.
    assert [a.media_id for a in message.attachments] == [prefix + "3", prefix + "4", prefix + "5"]
    assert all(a.url is None for a in message.attachments)  # a reference only: no bytes, no URL


def test_a_mail_without_message_id_gets_an_id_derived_from_its_bytes() -> None:
    raw = wire("""
From: Jane <jane@example.org>
Subject: no id
Date: Tue, 4 Mar 2025 10:00:00 +0100

Hello without an id.
""")

    message = parse_mime(raw)

    assert message.external_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert parse_mime(raw).external_id == message.external_id  # a redelivery is the same message
    assert parse_mime(raw + b"\r\nmore").external_id != message.external_id


@pytest.mark.parametrize(
    "raw",
    [
        wire("To: support@example.com\nSubject: no sender\n\nHello"),
        wire("From: Undisclosed\nSubject: a name, no address\n\nHello"),
        wire("From: <@>\n\nHello"),
        b"",
        b"\x00\xff garbage that is no mail",
    ],
    ids=["no-from", "name-only", "empty-address", "empty", "garbage"],
)
def test_a_mail_without_a_from_address_is_refused(raw: bytes) -> None:
    with pytest.raises(PayloadInvalid, match="From"):
        parse_mime(raw)


def test_iso_8859_1_subject_name_and_body_are_decoded() -> None:
    message = parse_mime(LATIN1, received_at=RECEIVED)

    assert message.subject == "Bestellung für München - Lieferverzögerung"
    assert message.display_name == "Jörg Müller"
    assert message.text == "Grüße aus München, die Lieferung für Straße 5 fehlt."


def test_date_is_utc_none_when_unreadable_and_never_after_arrival() -> None:
    def dated(date: str) -> bytes:
        return wire(f"From: jane@example.org\nDate: {date}\nMessage-ID: <d@example.org>\n\nHi")

    assert parse_mime(dated("Tue, 4 Mar 2025 23:30:00 -0500")).sent_at == datetime(
        2025, 3, 5, 4, 30, tzinfo=UTC
    )
    assert parse_mime(dated("yesterday, around noon")).sent_at is None
    assert parse_mime(wire("From: jane@example.org\n\nHi")).sent_at is None
    # A sender's clock a day fast: the message cannot have been sent after it arrived.
    assert parse_mime(dated("Wed, 5 Mar 2025 12:00:00 +0000"), received_at=RECEIVED).sent_at == RECEIVED


def test_stripping_that_would_leave_nothing_shows_the_whole_text() -> None:
    only_signature = "--\nJane Doe\nACME Corp"

    assert shown_text(only_signature) == only_signature
    raw = wire(f"From: jane@example.org\nMessage-ID: <s@example.org>\n\n{only_signature}\n")
    assert parse_mime(raw).text == only_signature


def test_hyphen_lists_are_not_taken_for_a_signature() -> None:
    text = "Please cancel these:\n- order 1234\n- order 5678\n\nThanks a lot"

    assert shown_text(text) == text


def test_text_postgresql_cannot_store_is_dropped() -> None:
    raw = wire("From: jane@example.org\nMessage-ID: <nul@example.org>\n\nbefore\x00after\n")

    message = parse_mime(raw)

    assert message.text == "beforeafter"
    assert "\x00" not in (message.original_text or "")


# --- MimeChannel: Bearer token ---------------------------------------------------------------------------


def request(headers: dict[str, str], body: bytes = ALTERNATIVE) -> WebhookRequest:
    return WebhookRequest(
        body=body, headers=headers, url="https://hooks.example.com/webhooks/email/mime", received_at=RECEIVED
    )


def test_mime_channel_accepts_the_bearer_token_and_parses_the_body() -> None:
    channel = MimeChannel(token="s3cret-token")

    channel.verify(request({"authorization": "Bearer s3cret-token"}))
    channel.verify(request({"authorization": "bearer s3cret-token"}))  # the scheme is case-insensitive
    parsed = channel.parse(request({"authorization": "Bearer s3cret-token"}))

    assert [m.external_id for m in parsed.messages] == ["7a1c2e4f-1234-4d2b-9e0a-3c5d6e7f8a9b@example.org"]
    assert parsed.replay_keys == ()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token"},
        {"authorization": "Bearer s3cret-token-and-more"},
        {"authorization": "Basic s3cret-token"},
        {"authorization": "Bearer"},
        {"authorization": "s3cret-token"},
    ],
    ids=["missing", "wrong", "longer", "other-scheme", "no-token", "no-scheme"],
)
def test_mime_channel_refuses_a_missing_or_wrong_token(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureInvalid):
        MimeChannel(token="s3cret-token").verify(request(headers))


def test_mime_channel_needs_a_token() -> None:
    with pytest.raises(ValueError, match="token"):
        MimeChannel(token="")


# --- robustness: whatever arrives is a message or a PayloadInvalid, never another error (a 500) ------------

SAMPLES = [ALTERNATIVE, HTML_ONLY, GMAIL_REPLY, OUTLOOK_REPLY, ATTACHMENTS, LATIN1]


@settings(max_examples=120, deadline=None)
@given(
    sample=st.sampled_from(SAMPLES),
    cut=st.integers(min_value=0, max_value=4000),
    noise=st.binary(max_size=64),
    at=st.integers(min_value=0, max_value=4000),
)
def test_damaged_mail_is_parsed_or_refused_as_payload_invalid(
    sample: bytes, cut: int, noise: bytes, at: int
) -> None:
    damaged = sample[:at] + noise + sample[at:][: max(0, cut - at)] + sample[cut:]
    try:
        message = parse_mime(damaged, received_at=RECEIVED)
    except PayloadInvalid:
        return
    assert message.external_id
    assert "\x00" not in message.text


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_parsed_or_refused_as_payload_invalid(raw: bytes) -> None:
    try:
        parse_mime(b"From: a@example.org\r\n" + raw)
        parse_mime(raw)
    except PayloadInvalid:
        pass
