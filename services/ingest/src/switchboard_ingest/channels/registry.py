"""Which channels this deployment serves: each provider adapter is built from its settings, and only when
its secrets are set (an unconfigured channel's webhook answers 404, its replies fail as unsendable)."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard_common.events import Channel
from switchboard_ingest.channels.api import ApiChannel
from switchboard_ingest.channels.base import OutboundAdapter
from switchboard_ingest.channels.messenger import MessengerChannel
from switchboard_ingest.channels.twilio import TwilioSmsChannel
from switchboard_ingest.channels.whatsapp import WhatsAppChannel
from switchboard_ingest.settings import IngestSettings

TWILIO_SMS_STATUS_PATH = "/webhooks/twilio/sms/status"


@dataclass(frozen=True, slots=True)
class Channels:
    whatsapp: WhatsAppChannel | None = None
    messenger: MessengerChannel | None = None
    twilio_sms: TwilioSmsChannel | None = None
    api: ApiChannel | None = None

    def outbound(self) -> dict[Channel, OutboundAdapter]:
        """The adapter that sends each configured channel's replies."""
        senders: dict[Channel, OutboundAdapter] = {}
        if self.whatsapp is not None:
            senders[Channel.WHATSAPP] = self.whatsapp
        if self.messenger is not None:
            senders |= dict.fromkeys(MessengerChannel.channels, self.messenger)
        if self.twilio_sms is not None:
            senders[Channel.SMS] = self.twilio_sms
        if self.api is not None:
            senders[Channel.API] = self.api
        return senders


def configure(settings: IngestSettings) -> Channels:
    s = settings
    whatsapp = messenger = twilio_sms = api = None
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
    return Channels(whatsapp=whatsapp, messenger=messenger, twilio_sms=twilio_sms, api=api)
