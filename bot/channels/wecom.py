"""The WeCom (企业微信) app channel: volunteers and coordinators use the same dialogs as elsewhere.

`/wecom` answers WeCom's URL check (GET, encrypted echostr) and receives encrypted messages
(POST, `msg_signature`); WeCom always uses AES. A POST with a wrong signature, a timestamp more
than 300 s off, or a (timestamp, nonce, signature) seen before gets 403 (bot/channels/wx_guard.py). Options are shown as numbered choices and a
typed number picks one. A newcomer links with an invite code (the registration dialog) or, on
first contact, by the mobile number WeCom holds for them when it matches a known volunteer.
Replies go out passively within the answer budget, else through the app's message/send API.

Settings: WARMLINE_WECOM_CORP_ID, _SECRET, _AGENT_ID, _TOKEN, _AES_KEY, WARMLINE_WECOM_API_BASE;
numbers in `[wecom]` (bot/defaults/wechat.toml).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from wechatpy.enterprise import WeChatClient as EnterpriseClient
from wechatpy.enterprise import WeChatCrypto, parse_message
from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.exceptions import WeChatClientException

from bot.channels.render import numbered_text
from bot.channels.wechat_sender import (
    call_api,
    reply_threads,
    send_picture,
    split_text,
    threads_for,
    to_result,
)
from bot.channels.wx_errors import Outcome, Verdict
from bot.channels.wx_guard import (
    Forbidden,
    SeenRequests,
    check_fresh,
    check_parts,
    open_echo,
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
from bot.channels.wx_pump import Answer
from bot.channels.wx_reply import text_reply
from bot.channels.wx_token import WxClientMixin, api_base
from bot.config import ConfigError
from bot.delivery.base import RateLimit, SendRequest, SendResult
from dialogs.engine import catalog
from dialogs.engine.types import Inbound
from storage.db import Database
from storage.invites import looks_like_code
from storage.models import ChannelAddress, DialogSession

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.wecom")

CHANNEL = "wecom"
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"
REQUIRED = ("WARMLINE_WECOM_CORP_ID", "WARMLINE_WECOM_SECRET", "WARMLINE_WECOM_AGENT_ID",
            "WARMLINE_WECOM_TOKEN", "WARMLINE_WECOM_AES_KEY")
USERID = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MEDIA = frozenset({"image", "voice", "video", "shortvideo", "location", "link", "file"})


def from_app(app: App) -> WeComChannel | None:
    """The channel when WARMLINE_WECOM_* are set; None when none is; an error when only some are."""
    values = {name: app.settings.get_env(name) for name in REQUIRED}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConfigError(f"WeCom is half configured; missing {', '.join(missing)}")
    corp_id, secret, agent_id, token, aes_key = (str(values[name]) for name in REQUIRED)
    if not agent_id.isdigit():
        raise ConfigError("WARMLINE_WECOM_AGENT_ID must be the app's numeric AgentId")
    try:
        crypto = WeChatCrypto(token, aes_key, corp_id)
    except Exception as exc:
        raise ConfigError("WARMLINE_WECOM_AES_KEY must be the 43-character EncodingAESKey") from exc
    return WeComChannel(app, corp_id, secret, int(agent_id), crypto)


class WeComClient(WxClientMixin, EnterpriseClient):
    """wechatpy's WeCom client on the configured API base, with the shared token."""

    def __init__(self, db: Database, corp_id: str, secret: str, agent_id: int, base: str,
                 timeout: float) -> None:
        EnterpriseClient.__init__(self, corp_id, secret, timeout=timeout, auto_retry=False)
        self._setup_wx(db, f"wecom:token:{corp_id}:{agent_id}", base, timeout)

    def _token_request(self) -> tuple[str, dict[str, str]]:
        return "gettoken", {"corpid": self.corp_id, "corpsecret": self.secret}


class WeComSender:
    """The WeCom app's ChannelSender: text through message/send, options numbered."""

    channel = CHANNEL

    def __init__(self, client: WeComClient, agent_id: int, config: dict[str, Any]) -> None:
        self.client = client
        self.agent_id = agent_id
        self.quota_retry = float(config.get("quota_retry_seconds", 60))
        self.max_bytes = int(config.get("text_max_bytes", 2000))
        self.limits = RateLimit(per_second=float(config.get("per_second", 20)),
                                per_recipient_interval=float(config.get("per_recipient_interval", 0.5)))
        self.replies = reply_threads(CHANNEL, config)

    async def send(self, request: SendRequest) -> SendResult:
        verdict = Verdict(Outcome.SENT, "")
        threads = threads_for(request, self.replies)
        for piece in split_text(numbered_text(request.payload), self.max_bytes):
            verdict = await self._send(request.address, lambda piece=piece: self.client.message.send_text(
                self.agent_id, request.address, piece), threads)
            if verdict.outcome is not Outcome.SENT:
                return to_result(verdict, self.quota_retry)
        attachment = request.payload.get("attachment")
        if attachment:  # a chart (image) or an exported file, after the text it belongs to
            photo = attachment.get("kind") == "photo"
            send = self.client.message.send_image if photo else self.client.message.send_file
            verdict = await send_picture(
                self.client, CHANNEL, attachment, lambda media_id: self._checked(
                    request.address, send(self.agent_id, request.address, media_id)),
                media_type="image" if photo else "file", threads=threads)
        return to_result(verdict, self.quota_retry)

    async def _send(self, userid: str, fn: Any, threads: Executor | None) -> Verdict:
        return (await call_api(self.client, CHANNEL, lambda: self._checked(userid, fn()), threads))[0]

    @staticmethod
    def _checked(userid: str, answer: Any) -> Any:
        """WeCom answers 0 but names users it could not reach (left, or outside the app)."""
        if isinstance(answer, dict) and userid in str(answer.get("invaliduser") or "").split("|"):
            raise WeChatClientException(81013, "invaliduser")
        return answer


class WeComChannel(PumpedWebhookChannel):
    name = CHANNEL
    path = "/wecom"

    def __init__(self, app: App, corp_id: str, secret: str, agent_id: int, crypto: WeChatCrypto) -> None:
        self.app = app
        self.agent_id = agent_id
        self.corp_id = corp_id
        self.crypto = crypto
        self.wall_clock: Callable[[], float] = time.time  # WeCom's timestamps are real time
        self.seen = SeenRequests(app.db, CHANNEL, lambda: self.wall_clock())
        config = app.settings.section("wecom")
        self.max_body = int(config.get("max_body_bytes", 65536))
        self.link_by_mobile = bool(config.get("link_by_mobile", True))
        base = api_base(app.settings.get_env("WARMLINE_WECOM_API_BASE"), DEFAULT_API_BASE)
        self.client = WeComClient(app.db, corp_id, secret, agent_id, base,
                                  float(config.get("http_timeout_seconds", 8)))
        self._start_pump(app, WeComSender(self.client, agent_id, config), config)

    def _verify(self, request: Request) -> Response:
        """WeCom's URL check: decrypt `echostr` and answer with its plain text."""
        q = request.query_params
        signature, timestamp, nonce, echo = (q.get(k) for k in ("msg_signature", "timestamp", "nonce", "echostr"))
        if not signature or not timestamp or not nonce or not echo:
            return refuse(403, "forbidden")
        try:
            plain = open_echo(self.crypto, PrpCrypto, timestamp, nonce, signature, echo)
        except Exception:  # wrong signature, wrong corp id, or not our ciphertext
            return refuse(403, "forbidden")
        return PlainTextResponse(plain)

    async def _receive(self, request: Request, deadline: float) -> Response:
        q = request.query_params
        try:
            timestamp, nonce, signature = check_parts(q.get("timestamp"), q.get("nonce"), q.get("msg_signature"))
            check_fresh(timestamp, self.wall_clock)
        except Forbidden:
            return refuse(403, "forbidden")
        try:
            body = await read_body(request, self.max_body)
        except BodyTooLarge:
            return refuse(413, "request too large")
        if not safe_xml(body):
            return refuse(400, "bad request")
        try:
            xml = open_sealed(self.crypto, PrpCrypto, body, timestamp, nonce, signature)
        except Exception as exc:
            forged = isinstance(exc, Forbidden) or type(exc).__name__ == "InvalidCorpIdException"
            log.warning("wecom post refused error=%s", type(exc).__name__)
            return refuse(403, "forbidden") if forged else refuse(400, "bad request")
        try:
            if not safe_xml(xml):
                return refuse(400, "bad request")
            message = parse_message(xml)
            data: dict[str, Any] = dict(getattr(message, "_data", None) or {})
        except Exception as exc:
            log.warning("wecom post unreadable error=%s", type(exc).__name__)
            return refuse(400, "bad request")
        userid = str(data.get("FromUserName") or "")
        if message is None or not USERID.match(userid):
            return refuse(400, "bad request")
        gate = asyncio.ensure_future(self.seen.first_time(timestamp, nonce, signature))
        if str(data.get("AgentID") or self.agent_id) != str(self.agent_id):
            return success()  # another app of the same company: not ours to answer
        inbound = self._inbound(data, userid)
        if isinstance(inbound, str):  # answered here, without a step
            if not await gate:
                return refuse(403, "forbidden")
            return Answer(inbound, deadline=deadline).response(self._seal(data, userid, inbound, nonce, timestamp))
        if inbound is None:
            return success()
        answer = await self.pump.answer(inbound, deadline, self._with_mobile if self.link_by_mobile else None,
                                        gate, request)
        if answer.refused:
            return refuse(403, "forbidden")
        if not answer.text:
            return success()
        return answer.response(self._seal(data, userid, answer.text, nonce, timestamp))

    def _seal(self, data: dict[str, Any], userid: str, text: str, nonce: str, timestamp: str) -> str:
        reply = text_reply(userid, str(data.get("ToUserName") or self.corp_id), text, agent_id=self.agent_id)
        return str(self.crypto.encrypt_message(reply, nonce, timestamp))

    def _inbound(self, data: dict[str, Any], userid: str) -> Inbound | str | None:
        """The Inbound for the runner, a text to answer at once, or None when nothing is said."""
        msg_type = str(data.get("MsgType") or "").lower()
        event_key = f"{userid}:{data.get('CreateTime', '')}"
        if msg_type == "text":
            return Inbound(CHANNEL, userid, text=str(data.get("Content") or ""),
                           message_id=str(data.get("MsgId") or event_key))
        if msg_type in MEDIA:
            return str(catalog.t("wechat.text_only"))
        if msg_type == "event":
            event = str(data.get("Event") or "").lower()
            if event == "click":
                return Inbound(CHANNEL, userid, text=str(data.get("EventKey") or "")[:200], message_id=event_key)
            if event == "subscribe":
                return Inbound(CHANNEL, userid, event="subscribe", message_id=event_key)
        return None  # enter_agent, view, location reports: nothing to answer

    async def _with_mobile(self, inbound: Inbound) -> Inbound:
        """On a user's very first message, offer the runner the mobile WeCom holds for them."""
        async with self.app.db.async_session() as session:
            known = await session.scalar(select(ChannelAddress.id).where(
                ChannelAddress.channel == CHANNEL, ChannelAddress.address == inbound.address))
            talked = await session.scalar(select(DialogSession.id).where(
                DialogSession.channel == CHANNEL, DialogSession.address == inbound.address))
        if known is not None or talked is not None or looks_like_code(inbound.text):
            return inbound  # linked already, or in a dialog, or typing an invite code: leave it be
        try:
            user = await asyncio.to_thread(self.client.call, lambda: self.client.user.get(inbound.address))
        except Exception as exc:  # no contacts permission, or the user is hidden: register by code
            log.info("wecom mobile lookup unavailable error=%s", type(exc).__name__)
            return inbound
        mobile = str((user or {}).get("mobile") or "") if isinstance(user, dict) else ""
        return dataclasses.replace(inbound, contact_phone=mobile) if mobile else inbound
