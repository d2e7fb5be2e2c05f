"""The fake provider APIs check auth and shape like the providers, and answer like them; the signing helpers
match published vectors."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.providers import FakeProviders, Recorded
from tests.fakes.signing import (
    meta_signature,
    twilio_signature,
    twilio_sms_params,
    twilio_status_params,
    whatsapp_status_payload,
    whatsapp_text_payload,
)
from tests.support import eventually

WA_TOKEN = "wa-token"
PHONE_ID = "106540352242922"
MS_TOKEN = "page-token"
SID = "AC" + "a" * 32
AUTH = "twilio-auth-token"

WA_PATH = f"/v21.0/{PHONE_ID}/messages"
MS_PATH = "/v21.0/me/messages"
TW_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeProviders]:
    with FakeProviders(
        whatsapp_token=WA_TOKEN,
        whatsapp_phone_number_id=PHONE_ID,
        messenger_token=MS_TOKEN,
        twilio_account_sid=SID,
        twilio_auth_token=AUTH,
    ) as server:
        yield server


@pytest.fixture
def client(fakes: FakeProviders) -> Iterator[httpx.Client]:
    fakes.reset()
    with httpx.Client(base_url=fakes.base_url, timeout=5.0) as http:
        yield http


def wa_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16505551234",
        "type": "text",
        "text": {"body": "hello"},
    }
    body.update(override)
    return body


def ms_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "recipient": {"id": "24680"},
        "messaging_type": "RESPONSE",
        "message": {"text": "hello"},
    }
    body.update(override)
    return body


def wa_auth(token: str = WA_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- WhatsApp --------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, wa_auth("wrong"), {"Authorization": f"Basic {WA_TOKEN}"}])
def test_whatsapp_rejects_bad_token_with_graph_190(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.post(WA_PATH, json=wa_body(), headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == 190 and error["type"] == "OAuthException" and error["fbtrace_id"]


def test_whatsapp_rejects_unknown_phone_number_id(client: httpx.Client) -> None:
    response = client.post("/v21.0/999/messages", json=wa_body(), headers=wa_auth())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100


@pytest.mark.parametrize(
    "body",
    [
        wa_body(messaging_product="sms"),
        {k: v for k, v in wa_body().items() if k != "messaging_product"},
        wa_body(to="not-a-number"),
        wa_body(type="image"),
        wa_body(text={"body": ""}),
        wa_body(text="hello"),
        wa_body(text={"body": "x" * 4097}),
    ],
)
def test_whatsapp_rejects_bad_shape_with_code_100(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post(WA_PATH, json=body, headers=wa_auth())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100 and error["error_data"]["details"]


def test_whatsapp_rejects_non_json(client: httpx.Client, fakes: FakeProviders) -> None:
    response = client.post(WA_PATH, content=b"to=1", headers=wa_auth())
    assert response.status_code == 400
    assert fakes.requests("whatsapp")[0].json is None


def test_whatsapp_success_answers_like_the_cloud_api(client: httpx.Client, fakes: FakeProviders) -> None:
    response = client.post(WA_PATH, json=wa_body(), headers=wa_auth())
    assert response.status_code == 200
    answer = response.json()
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": "+16505551234", "wa_id": "16505551234"}]
    wamid = answer["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    [record] = fakes.requests("whatsapp")
    assert record.provider_id == wamid and record.status == 200 and record.delivered
    assert record.json == wa_body() and record.headers["authorization"] == f"Bearer {WA_TOKEN}"
    assert record.path == WA_PATH


# --- Messenger -------------------------------------------------------------------------------------


def test_messenger_rejects_bad_token(client: httpx.Client) -> None:
    response = client.post(MS_PATH, json=ms_body(), headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 190


@pytest.mark.parametrize(
    "body",
    [
        ms_body(messaging_type="WHENEVER"),
        {k: v for k, v in ms_body().items() if k != "messaging_type"},
        ms_body(recipient={}),
        ms_body(message={"text": ""}),
        ms_body(messaging_type="MESSAGE_TAG"),
    ],
)
def test_messenger_rejects_bad_shape(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post(MS_PATH, json=body, headers={"Authorization": f"Bearer {MS_TOKEN}"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100


def test_messenger_accepts_access_token_query_param(client: httpx.Client, fakes: FakeProviders) -> None:
    response = client.post(MS_PATH, json=ms_body(), params={"access_token": MS_TOKEN})
    assert response.status_code == 200
    answer = response.json()
    assert answer["recipient_id"] == "24680" and answer["message_id"].startswith("m_")
    assert fakes.requests("messenger")[0].provider_id == answer["message_id"]


# --- Twilio ----------------------------------------------------------------------------------------

TW_FORM = {"To": "+15558675310", "From": "+15017122661", "Body": "hello"}


OTHER_SID = "AC" + "b" * 32


@pytest.mark.parametrize(
    ("auth", "path"),
    [
        (None, TW_PATH),
        ((SID, "wrong"), TW_PATH),
        ((OTHER_SID, AUTH), TW_PATH),
        ((SID, AUTH), f"/2010-04-01/Accounts/{OTHER_SID}/Messages.json"),
    ],
)
def test_twilio_rejects_bad_credentials_with_20003(
    client: httpx.Client, auth: tuple[str, str] | None, path: str
) -> None:
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}
    response = client.post(path, data=TW_FORM, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "+15017122661", "Body": "hi"}, 21604),
        ({**TW_FORM, "To": "5558675310"}, 21211),
        ({"To": "+15558675310", "Body": "hi"}, 21603),
        ({"To": "+15558675310", "From": "+15017122661"}, 21602),
    ],
)
def test_twilio_rejects_bad_shape(client: httpx.Client, form: dict[str, str], code: int) -> None:
    response = client.post(TW_PATH, data=form, auth=(SID, AUTH))
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["status"] == 400


def test_twilio_json_body_is_not_a_form(client: httpx.Client) -> None:
    response = client.post(TW_PATH, json=TW_FORM, auth=(SID, AUTH))
    assert response.status_code == 400


def test_twilio_success_answers_201_message_resource(client: httpx.Client, fakes: FakeProviders) -> None:
    response = client.post(TW_PATH, data=TW_FORM, auth=(SID, AUTH))
    assert response.status_code == 201
    answer = response.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", answer["sid"])
    assert answer["status"] == "queued" and answer["account_sid"] == SID
    assert (answer["to"], answer["from"], answer["body"]) == ("+15558675310", "+15017122661", "hello")
    [record] = fakes.requests("twilio")
    assert record.form == TW_FORM and record.provider_id == answer["sid"]


# --- scripted failures, delays, waiting ------------------------------------------------------------


def test_fail_next_answers_scripted_status_with_retry_after(
    client: httpx.Client, fakes: FakeProviders
) -> None:
    fakes.fail_next("whatsapp", 429, times=2, retry_after="7")
    # An unauthenticated request is rejected on its own merits and does not use up a scripted failure.
    assert client.post(WA_PATH, json=wa_body(), headers=wa_auth("wrong")).status_code == 401
    for _ in range(2):
        response = client.post(WA_PATH, json=wa_body(), headers=wa_auth())
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        assert response.json()["error"]["code"] == 80007
    assert client.post(WA_PATH, json=wa_body(), headers=wa_auth()).status_code == 200
    assert [r.status for r in fakes.requests("whatsapp")] == [401, 429, 429, 200]
    assert [r.provider_id is not None for r in fakes.requests("whatsapp")] == [False, False, False, True]


def test_fail_next_defaults_and_custom_body(client: httpx.Client, fakes: FakeProviders) -> None:
    fakes.fail_next("twilio", 429)
    fakes.fail_next("messenger", 503, body={"error": {"code": 2, "message": "custom"}})
    twilio = client.post(TW_PATH, data=TW_FORM, auth=(SID, AUTH))
    assert twilio.status_code == 429 and twilio.json()["code"] == 20429
    assert "retry-after" not in twilio.headers
    messenger = client.post(MS_PATH, json=ms_body(), params={"access_token": MS_TOKEN})
    assert messenger.status_code == 503 and messenger.json() == {"error": {"code": 2, "message": "custom"}}


def test_unknown_paths_are_recorded_as_404(client: httpx.Client, fakes: FakeProviders) -> None:
    assert client.post("/v21.0/123/media").status_code == 404
    assert fakes.requests("unknown")[0].path == "/v21.0/123/media"


async def test_delayed_answer_after_client_timeout_is_recorded_undelivered(fakes: FakeProviders) -> None:
    fakes.reset()
    fakes.delay_next("messenger", 5.0)
    async with httpx.AsyncClient(base_url=fakes.base_url) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(MS_PATH, json=ms_body(), params={"access_token": MS_TOKEN}, timeout=0.3)
        retry = await http.post(MS_PATH, json=ms_body(), params={"access_token": MS_TOKEN})
    assert retry.status_code == 200
    done = await fakes.wait_for("messenger", 1)
    assert [r.provider_id for r in done] == [retry.json()["message_id"]]

    # The timed-out request was still processed by the "provider": a real duplicate-send hazard.
    async def timed_out() -> list[Recorded]:
        return [r for r in fakes.requests("messenger") if not r.delivered]

    [record] = await eventually(timed_out, timeout=5.0, what="the timed-out request to be recorded")
    assert record.status == 200 and record.provider_id is not None


async def test_wait_for_fails_when_too_few_succeeded(fakes: FakeProviders) -> None:
    fakes.reset()
    with pytest.raises(AssertionError, match="timed out waiting for 1 successful twilio"):
        await fakes.wait_for("twilio", 1, timeout=0.1)


# --- signing helpers -------------------------------------------------------------------------------


def test_meta_signature_is_hmac_sha256_hex() -> None:
    # RFC 4231 test case 2.
    assert meta_signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_twilio_signature_matches_twilios_documented_example() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_payload_builders_follow_provider_shapes() -> None:
    failed = whatsapp_status_payload(PHONE_ID, "wamid.X", "failed", "+16505551234", 1700000000, 131026)
    value = failed["entry"][0]["changes"][0]["value"]
    assert (
        failed["object"] == "whatsapp_business_account" and value["metadata"]["phone_number_id"] == PHONE_ID
    )
    status = value["statuses"][0]
    assert (status["id"], status["status"], status["recipient_id"]) == ("wamid.X", "failed", "16505551234")
    assert status["errors"][0]["code"] == 131026 and "pricing" not in status
    read = whatsapp_status_payload(PHONE_ID, "wamid.X", "read", "16505551234", 1700000000)
    assert "errors" not in read["entry"][0]["changes"][0]["value"]["statuses"][0]
    text = whatsapp_text_payload(PHONE_ID, "16505551234", "Ann", "wamid.Y", "hi", 1700000000)
    message = text["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message == {
        "from": "16505551234",
        "id": "wamid.Y",
        "timestamp": "1700000000",
        "type": "text",
        "text": {"body": "hi"},
    }
    mms = twilio_sms_params(
        SID, "MM" + "1" * 32, "+15558675310", "+15017122661", "", [("https://x/1", "image/png")]
    )
    assert (mms["NumMedia"], mms["MediaUrl0"], mms["MediaContentType0"]) == ("1", "https://x/1", "image/png")
    assert twilio_status_params(SID, "SM1", "undelivered", 30003)["ErrorCode"] == "30003"
