"""Which channels this deployment serves: each provider adapter is built from its settings, and only when
its secrets are set (an unconfigured channel's webhook answers 404, its replies fail as unsendable)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from switchboard_common.events import Channel
from switchboard_common.http.errors import ApiError
from switchboard_ingest.channels import ses
from switchboard_ingest.channels.api import ApiChannel
from switchboard_ingest.channels.base import OutboundAdapter, Sender
from switchboard_ingest.channels.email import MimeChannel
from switchboard_ingest.channels.mailgun import MailgunChannel, MailgunSender
from switchboard_ingest.channels.messenger import MessengerChannel
from switchboard_ingest.channels.ses import CertificateCache
from switchboard_ingest.channels.smtp import SmtpSender
from switchboard_ingest.channels.twilio import TwilioSmsChannel
from switchboard_ingest.channels.twilio_voice import TwilioVoiceChannel
from switchboard_ingest.channels.whatsapp import WhatsAppChannel
from switchboard_ingest.settings import IngestSettings

TWILIO_SMS_STATUS_PATH = "/webhooks/twilio/sms/status"


@dataclass(frozen=True, slots=True)
class SnsIntake:
    """SES mail through SNS: the accepted topics, the signing certificates (fetched from SNS hosts only,
    cached), and the one other fetch SNS asks for: confirming a subscription."""

    topic_arns: frozenset[str]
    certificates: CertificateCache
    client: httpx.AsyncClient

    async def confirm(self, message: Mapping[str, Any]) -> None:
        url = str(message.get("SubscribeURL", ""))
        # The URL came inside a verified message, but it is fetched only if it is SNS's own.
        if not ses.is_sns_url(url):
            raise ApiError(400, "SubscribeURL is not an SNS URL")
        response = await self.client.get(url)
        if response.status_code != 200:
            raise ApiError(503, f"SNS refused the subscription confirmation ({response.status_code})")


@dataclass(frozen=True, slots=True)
class Channels:
    whatsapp: WhatsAppChannel | None = None
    messenger: MessengerChannel | None = None
    twilio_sms: TwilioSmsChannel | None = None
    api: ApiChannel | None = None
    mailgun: MailgunChannel | None = None
    mime: MimeChannel | None = None
    sns: SnsIntake | None = None
    smtp: SmtpSender | None = None
    mailgun_sender: MailgunSender | None = None
    twilio_voice: TwilioVoiceChannel | None = None

    def outbound(self) -> dict[Channel, OutboundAdapter | Sender]:
        """What sends each configured channel's replies."""
        senders: dict[Channel, OutboundAdapter | Sender] = {}
        if self.whatsapp is not None:
            senders[Channel.WHATSAPP] = self.whatsapp
        if self.messenger is not None:
            senders |= dict.fromkeys(MessengerChannel.channels, self.messenger)
        if self.twilio_sms is not None:
            senders[Channel.SMS] = self.twilio_sms
        if self.api is not None:
            senders[Channel.API] = self.api
        # Mailgun's API when it is configured, else SMTP.
        if self.mailgun_sender is not None:
            senders[Channel.EMAIL] = self.mailgun_sender
        elif self.smtp is not None:
            senders[Channel.EMAIL] = self.smtp
        if self.twilio_voice is not None:
            # An agent's reply on voice is a callback call that speaks it (see docs/channels.md).
            senders[Channel.VOICE] = self.twilio_voice
        return senders


def configure(settings: IngestSettings, client: httpx.AsyncClient) -> Channels:
    """The configured channels; ``client`` is the one HTTP client of the webhooks' own fetches."""
    s = settings
    whatsapp = messenger = twilio_sms = api = mailgun = mime = sns = smtp = twilio_voice = None
    mailgun_sender = None
    if (
        s.whatsapp_app_secret
        and s.whatsapp_verify_token
        and s.whatsapp_access_token
        and s.whatsapp_phone_number_id
    ):
        whatsapp = WhatsAppChannel(
            app_secret=s.whatsapp_app_secret.get_secret_value(),
            verify_token=s.whatsapp_verify_token.get_secret_value(),
            access_token=s.whatsapp_access_token.get_secret_value(),
            phone_number_id=s.whatsapp_phone_number_id,
            api_base=s.graph_api_base,
        )
    if s.messenger_app_secret and s.messenger_verify_token and s.messenger_page_access_token:
        messenger = MessengerChannel(
            app_secret=s.messenger_app_secret.get_secret_value(),
            verify_token=s.messenger_verify_token.get_secret_value(),
            page_access_token=s.messenger_page_access_token.get_secret_value(),
            api_base=s.graph_api_base,
        )
    if s.twilio_account_sid and s.twilio_auth_token and s.twilio_from_number:
        twilio_sms = TwilioSmsChannel(
            account_sid=s.twilio_account_sid,
            auth_token=s.twilio_auth_token.get_secret_value(),
            from_number=s.twilio_from_number,
            api_base=s.twilio_api_base,
            # Twilio reports on each reply there; it needs a URL it can reach, so only with a public one.
            status_callback_url=(
                s.public_base_url.rstrip("/") + TWILIO_SMS_STATUS_PATH if s.public_base_url else None
            ),
        )
    if s.api_reply_url and s.api_reply_secret:
        api = ApiChannel(reply_url=s.api_reply_url, reply_secret=s.api_reply_secret.get_secret_value())
    if s.twilio_account_sid and s.twilio_auth_token and s.twilio_from_number and s.public_base_url:
        # Twilio's callbacks (recordings, transcriptions, call status) need a URL it can reach.
        twilio_voice = TwilioVoiceChannel(
            account_sid=s.twilio_account_sid,
            auth_token=s.twilio_auth_token.get_secret_value(),
            from_number=s.twilio_from_number,
            api_base=s.twilio_api_base,
            public_base_url=s.public_base_url,
            max_recording_s=s.voice_max_recording_s,
        )
    if s.mailgun_signing_key:
        mailgun = MailgunChannel(
            signing_key=s.mailgun_signing_key.get_secret_value(), max_age_s=s.mailgun_max_age_s
        )
    if s.email_mime_token:
        mime = MimeChannel(token=s.email_mime_token.get_secret_value())
    if s.email_sns_topic_arns:
        sns = SnsIntake(frozenset(s.email_sns_topic_arns), CertificateCache(client), client)
    if s.smtp_host and s.email_from_address:
        smtp = SmtpSender(
            host=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            starttls=s.smtp_starttls,
            timeout_s=s.smtp_timeout_s,
            from_address=s.email_from_address,
        )
    if s.mailgun_api_key and s.mailgun_domain and s.email_from_address:
        mailgun_sender = MailgunSender(
            api_key=s.mailgun_api_key.get_secret_value(),
            domain=s.mailgun_domain,
            api_base=s.mailgun_api_base,
            from_address=s.email_from_address,
        )
    return Channels(
        whatsapp=whatsapp,
        messenger=messenger,
        twilio_sms=twilio_sms,
        api=api,
        mailgun=mailgun,
        mime=mime,
        sns=sns,
        smtp=smtp,
        mailgun_sender=mailgun_sender,
        twilio_voice=twilio_voice,
    )
