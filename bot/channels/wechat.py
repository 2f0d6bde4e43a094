"""The WeChat Official Account (公众号) channel: where families follow the association.

`/wechat` answers WeChat's URL check (GET with echostr) and receives messages and events (POST).
With an AES key configured only safe mode is accepted (`encrypt_type=aes` with `msg_signature`,
which covers the ciphertext); without one, plain mode (`signature`, which does not cover the body:
safe only on a trusted network). A POST whose signature is missing or wrong, whose timestamp is
more than 300 s off, or whose (timestamp, nonce, signature) was seen before gets 403 and is not
looked at further (bot/channels/wx_guard.py); an oversized body gets 413; unreadable XML 400. Text and events become an `Inbound` for the dialog runner, which
processes each WeChat retry once (MsgId, or FromUserName:CreateTime for events). Unfollowing
(unsubscribe) withdraws the member's consent to messages at once, here, in one transaction with
the record that the event was handled — there is nobody left to reply to.

Settings: WARMLINE_WECHAT_APPID, _SECRET, _TOKEN, _AES_KEY (safe mode), WARMLINE_WECHAT_API_BASE;
numbers in `[wechat]` (bot/defaults/wechat.toml).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from wechatpy import parse_message
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException

from bot.channels.wechat_sender import OfficialAccountClient, WeChatSender
from bot.channels.wx_guard import (
    Forbidden,
    SeenRequests,
    check_fresh,
    check_parts,
    check_signature,
    open_sealed,
)
from bot.channels.wx_inbound import (
    BodyTooLarge,
    PumpedWebhookChannel,
    read_body,
    refuse,
    safe_xml,
    success,
)
from bot.channels.wx_reply import text_reply
from bot.channels.wx_token import api_base
from bot.config import ConfigError
from dialogs.engine.types import Inbound
from storage.audit import record_audit
from storage.models import (
    ChannelAddress,
    Consent,
    OutboxMessage,
    OutboxStatus,
    Preference,
    ProcessedInbound,
)

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.wechat")

CHANNEL = "wechat"
DEFAULT_API_BASE = "https://api.weixin.qq.com/cgi-bin/"
REQUIRED = ("WARMLINE_WECHAT_APPID", "WARMLINE_WECHAT_SECRET", "WARMLINE_WECHAT_TOKEN")
OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MEDIA = frozenset({"image", "voice", "video", "shortvideo", "location", "link", "file"})
# Events that say nothing to answer: link clicks, location reports, receipts of our own sends.
SILENT_EVENTS = frozenset({"view", "location", "templatesendjobfinish", "masssendjobfinish",
                           "subscribe_msg_sent_event", "view_miniprogram"})


def from_app(app: App) -> OfficialAccountChannel | None:
    """The channel when WARMLINE_WECHAT_* are set; None when none is; an error when only some are."""
    settings = app.settings
    values = {name: settings.get_env(name) for name in REQUIRED}
    aes_key = settings.get_env("WARMLINE_WECHAT_AES_KEY")
    if not any(values.values()) and not aes_key:
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConfigError(f"WeChat Official Account is half configured; missing {', '.join(missing)}")
    appid, secret, token = (str(values[name]) for name in REQUIRED)
    crypto = None
    if aes_key:
        try:
            crypto = WeChatCrypto(token, aes_key, appid)
        except Exception as exc:  # wechatpy asserts on a key that is not 43 base64 characters
            raise ConfigError("WARMLINE_WECHAT_AES_KEY must be the 43-character EncodingAESKey") from exc
    return OfficialAccountChannel(app, appid, secret, token, crypto)


class OfficialAccountChannel(PumpedWebhookChannel):
    name = CHANNEL
    path = "/wechat"

    def __init__(self, app: App, appid: str, secret: str, token: str, crypto: WeChatCrypto | None) -> None:
        self.app = app
        self.appid = appid
        self.token = token
        self.crypto = crypto
        self.wall_clock: Callable[[], float] = time.time  # WeChat's timestamps are real time
        self.seen = SeenRequests(app.db, CHANNEL, lambda: self.wall_clock())
        config = app.settings.section("wechat")
        self.max_body = int(config.get("max_body_bytes", 65536))
        base = api_base(app.settings.get_env("WARMLINE_WECHAT_API_BASE"), DEFAULT_API_BASE)
        client = OfficialAccountClient(app.db, appid, secret, base, float(config.get("http_timeout_seconds", 8)))
        self._start_pump(app, WeChatSender(app, client, config), config)

    # ------------------------------------------------------------------ Channel protocol

    def _verify(self, request: Request) -> Response:
        """WeChat's URL check: echo `echostr` back when the signature is ours (it changes nothing)."""
        q = request.query_params
        try:
            timestamp, nonce, signature = check_parts(q.get("timestamp"), q.get("nonce"), q.get("signature"))
            check_signature((self.token, timestamp, nonce), signature)
        except Forbidden:
            return refuse(403, "forbidden")
        return PlainTextResponse(q.get("echostr", ""))

    def _open(self, request: Request, body: bytes) -> tuple[str | bytes, bool, tuple[str, str, str]]:
        """The message XML, checked (plain mode) or checked and decrypted (safe mode), and the
        (timestamp, nonce, signature) that proved it. With an AES key only safe mode is accepted."""
        q = request.query_params
        if self.crypto is None:
            parts = check_parts(q.get("timestamp"), q.get("nonce"), q.get("signature"))
            check_fresh(parts[0], self.wall_clock)
            check_signature((self.token, parts[0], parts[1]), parts[2])
            return body, False, parts
        if q.get("encrypt_type", "").lower() != "aes":
            raise Forbidden  # a plain-mode body would be signed without its content
        parts = check_parts(q.get("timestamp"), q.get("nonce"), q.get("msg_signature"))
        check_fresh(parts[0], self.wall_clock)
        try:
            return open_sealed(self.crypto, PrpCrypto, body, *parts), True, parts
        except InvalidAppIdException as exc:
            raise Forbidden from exc

    async def _receive(self, request: Request, deadline: float) -> Response:
        try:
            body = await read_body(request, self.max_body)
        except BodyTooLarge:
            return refuse(413, "request too large")
        if not safe_xml(body):
            return refuse(400, "bad request")
        try:
            xml, encrypted, parts = self._open(request, body)
            if not safe_xml(xml):
                return refuse(400, "bad request")
            message = parse_message(xml)
            data: dict[str, Any] = dict(getattr(message, "_data", None) or {})
            openid = str(data.get("FromUserName") or "")
        except Forbidden:
            log.warning("wechat post refused: bad, stale or missing signature")
            return refuse(403, "forbidden")
        except Exception as exc:  # malformed XML, missing fields, bad ciphertext
            log.warning("wechat post unreadable error=%s", type(exc).__name__)
            return refuse(400, "bad request")
        if message is None or not OPENID.match(openid):
            return refuse(400, "bad request")
        gate = asyncio.ensure_future(self.seen.first_time(*parts))
        # events change things here (unfollowing withdraws consent): their verdict comes first
        if str(data.get("MsgType") or "").lower() == "event" and not await gate:
            log.warning("wechat post refused: replayed signature")
            return refuse(403, "forbidden")
        inbound = await self._inbound(data, openid)
        if inbound is None:
            return success()
        answer = await self.pump.answer(inbound, deadline, gate=gate, request=request)
        if answer.refused:
            return refuse(403, "forbidden")
        if not answer.text:
            return success()
        reply = text_reply(openid, str(data.get("ToUserName") or ""), answer.text)
        if encrypted and self.crypto is not None:
            reply = self.crypto.encrypt_message(reply, parts[1], parts[0])
        return answer.response(reply)

    # ------------------------------------------------------------------ messages and events

    async def _inbound(self, data: dict[str, Any], openid: str) -> Inbound | None:
        """The Inbound for this message, or None when it was handled here (or needs nothing)."""
        msg_type = str(data.get("MsgType") or "").lower()
        event_key = f"{openid}:{data.get('CreateTime', '')}"
        if msg_type == "text":
            return Inbound(CHANNEL, openid, text=str(data.get("Content") or ""),
                           message_id=str(data.get("MsgId") or event_key))
        if msg_type in MEDIA:
            spoken = str(data.get("Recognition") or "") if msg_type == "voice" else ""
            # words WeChat recognised in a voice message are read as typed; other media arrive as
            # an event (e.g. "voice", "image") for a dialog that declares it (the family line-back)
            return Inbound(CHANNEL, openid, text=spoken, event=None if spoken else msg_type,
                           message_id=str(data.get("MsgId") or event_key))
        if msg_type != "event":
            return None
        event = str(data.get("Event") or "").lower()
        key = str(data.get("EventKey") or "")
        if event == "unsubscribe":
            await self._unsubscribe(openid, event_key)
            return None
        if event in ("subscribe", "subscribe_scan", "scan"):
            await self._reachable_again(openid)
            # a QR code's scene (an invite code) rides along; wechatpy strips qrscene_ from it
            scene = key[:64] if event != "subscribe" else ""
            return Inbound(CHANNEL, openid, event="scan" if event == "scan" else "subscribe",
                           start_payload=scene or None, message_id=event_key)
        if event == "click":  # a menu button: its key is read exactly like typed words
            return Inbound(CHANNEL, openid, text=key[:200], message_id=event_key)
        if event in ("subscribe_msg_popup_event", "subscribe_msg_change_event"):
            return Inbound(CHANNEL, openid, event=subscription_choice(data), message_id=event_key)
        if event not in SILENT_EVENTS:
            log.info("wechat event ignored event=%s", event[:40])
        return None

    async def _reachable_again(self, openid: str) -> None:
        """A follower who comes back can be messaged again (consent is asked afresh by the dialog)."""
        async with self.app.db.async_session() as session:
            await session.execute(update(ChannelAddress).where(
                ChannelAddress.channel == CHANNEL, ChannelAddress.address == openid,
                ChannelAddress.blocked_at.is_not(None)).values(blocked_at=None))

    async def _unsubscribe(self, openid: str, event_key: str) -> None:
        """Withdraw consent, stop preferences and drop queued messages — once, in one transaction."""
        now = self.app.services.now()
        try:
            async with self.app.db.async_session() as session:
                if await session.get(ProcessedInbound, (CHANNEL, event_key)) is not None:
                    return
                session.add(ProcessedInbound(channel=CHANNEL, inbound_key=event_key, processed_at=now))
                await session.flush()
                address = await session.scalar(select(ChannelAddress).where(
                    ChannelAddress.channel == CHANNEL, ChannelAddress.address == openid))
                if address is not None:
                    await withdraw_consent(session, address, now)
        except IntegrityError:
            log.info("duplicate unsubscribe dropped")


async def withdraw_consent(session: Any, address: ChannelAddress, now: Any) -> None:
    """The member unfollowed: no consent, no preferences, nothing queued to that address."""
    address.blocked_at = address.blocked_at or now
    person_id = address.person_id
    consents = await session.scalars(select(Consent).where(
        Consent.person_id == person_id, Consent.withdrawn_at.is_(None)))
    for consent in consents:
        consent.withdrawn_at = now
    preference = await session.get(Preference, person_id)
    if preference is None:
        session.add(Preference(person_id=person_id, stopped_at=now, updated_at=now))
    elif preference.stopped_at is None:
        preference.stopped_at = now
        preference.updated_at = now
    await session.execute(update(OutboxMessage).where(
        OutboxMessage.channel == CHANNEL, OutboxMessage.address == address.address,
        OutboxMessage.status == OutboxStatus.QUEUED).values(status=OutboxStatus.FAILED,
                                                              last_error="unsubscribed"))
    await record_audit(session, actor_id=person_id, action="write", entity="consent", entity_id=None,
                       household_id=None, detail="wechat unsubscribe: consent withdrawn", at=now)


def subscription_choice(data: dict[str, Any]) -> str:
    """`subscribe_msg_accept` if the member accepted any template in the pop-up, else `_reject`."""
    container = data.get("SubscribeMsgPopupEvent") or data.get("SubscribeMsgChangeEvent") or {}
    items = container.get("List") if isinstance(container, dict) else None
    if isinstance(items, dict):
        items = [items]
    statuses = {str(i.get("SubscribeStatusString", "")).lower() for i in items or [] if isinstance(i, dict)}
    return "subscribe_msg_accept" if "accept" in statuses else "subscribe_msg_reject"
