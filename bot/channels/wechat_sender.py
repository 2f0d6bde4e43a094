"""Sending to families on the Official Account: customer-service message, template, or a phone call.

WeChat lets an Official Account send free-form (customer-service) messages only within 48 hours
of the follower's last interaction; after that only an approved template message can go, and
only if one is configured for this kind of message. If neither is possible the message is marked
undeliverable and the family's contact volunteer gets a task to call instead — the family still
hears from a person. wechatpy is synchronous, so every API call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from wechatpy import WeChatClient

from bot.channels.render import numbered_text
from bot.channels.wechat_templates import TemplateMessage, render
from bot.channels.wx_errors import Outcome, Verdict, from_answer, from_exception
from bot.channels.wx_token import WxClientMixin
from bot.delivery.base import RateLimit, SendRequest, SendResult
from dialogs.engine import catalog
from domain.call_tasks import ask_volunteer_to_call
from storage.db import Database
from storage.models import ChannelAddress, OutboxLane

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.wechat.send")

CHANNEL = "wechat"


class OfficialAccountClient(WxClientMixin, WeChatClient):
    """wechatpy's Official Account client on the configured API base, with the shared token."""

    def __init__(self, db: Database, appid: str, secret: str, base: str, timeout: float) -> None:
        WeChatClient.__init__(self, appid, secret, timeout=timeout, auto_retry=False)
        self._setup_wx(db, f"wechat:token:{appid}", base, timeout)

    def _token_request(self) -> tuple[str, dict[str, str]]:
        return "token", {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}


def split_text(text: str, max_bytes: int) -> list[str]:
    """Split on line breaks into pieces WeChat accepts (a text message holds about 2 KB)."""
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line.encode()) > max_bytes:  # one very long line: cut it by characters
            cut = len(line)
            while len(line[:cut].encode()) > max_bytes:
                cut = cut * 3 // 4
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:cut])
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode()) > max_bytes:
            pieces.append(current)
            current = line
        else:
            current = candidate
    if current or not pieces:
        pieces.append(current)
    return pieces


def reply_threads(platform: str, config: dict[str, Any]) -> ThreadPoolExecutor:
    """Threads for replies alone (`reply_threads`): wechatpy blocks a thread per call, and on the
    shared default pool (a handful of threads) a broadcast's sends queued ahead of the answer a
    volunteer is waiting for. Threads start only when used."""
    return ThreadPoolExecutor(max_workers=max(1, int(config.get("reply_threads", 8))),
                              thread_name_prefix=f"{platform}-replies")


def threads_for(request: SendRequest, replies: Executor) -> Executor | None:
    """The reply threads for a reply, the default pool for everything else."""
    return replies if request.lane == OutboxLane.INTERACTIVE else None


async def call_api(client: WxClientMixin, platform: str, fn: Any,
                   threads: Executor | None = None) -> tuple[Verdict, dict[str, Any]]:
    """One API call in a worker thread (wechatpy is synchronous), classified; never raises."""
    try:
        if threads is None:
            answer = await asyncio.to_thread(client.call, fn)
        else:
            answer = await asyncio.get_running_loop().run_in_executor(threads, client.call, fn)
    except Exception as exc:  # every failure is classified; none is recorded as sent
        verdict = from_exception(platform, exc)
        log.info("%s send refused outcome=%s error=%s", platform, verdict.outcome.value, verdict.error)
        return verdict, {}
    if not isinstance(answer, dict):  # not JSON (a proxy's error page?): not proof of delivery
        return Verdict(Outcome.RETRY, f"{platform}:bad_answer"), {}
    return from_answer(platform, answer), answer


async def send_picture(client: Any, platform: str, attachment: dict[str, Any], send: Any,
                       media_type: str = "image", threads: Executor | None = None) -> Verdict:
    """Upload a chart or file as temporary media, then send it; after the text it belongs to."""
    path = Path(str(attachment.get("path") or ""))
    if not path.is_file():
        return Verdict(Outcome.PERMANENT, f"{platform}:attachment_missing")

    def upload() -> Any:
        with path.open("rb") as fh:  # opened per try: a token retry uploads from the start again
            return client.media.upload(media_type, (attachment.get("filename") or path.name, fh))

    verdict, answer = await call_api(client, platform, upload, threads)
    media_id = answer.get("media_id")
    if verdict.outcome is not Outcome.SENT:
        return verdict
    if not media_id:
        return Verdict(Outcome.RETRY, f"{platform}:no_media_id")
    return (await call_api(client, platform, lambda: send(media_id), threads))[0]


def to_result(verdict: Verdict, quota_retry: float) -> SendResult:
    """A platform verdict in the delivery worker's terms (WINDOW is decided by the caller)."""
    if verdict.outcome is Outcome.SENT:
        return SendResult.sent(verdict.platform_message_id)
    if verdict.outcome is Outcome.QUOTA:
        return SendResult.retry(verdict.error, retry_after=quota_retry if verdict.errcode == 45009 else 60.0)
    if verdict.outcome is Outcome.UNREACHABLE:
        return SendResult.failed(verdict.error, unreachable=True)
    if verdict.outcome is Outcome.PERMANENT:
        return SendResult.failed(verdict.error)
    return SendResult.retry(verdict.error)  # TOKEN, RETRY


class WeChatSender:
    """The Official Account's ChannelSender."""

    channel = CHANNEL

    def __init__(self, app: App, client: OfficialAccountClient, config: dict[str, Any]) -> None:
        self.app = app
        self.client = client
        self.window = timedelta(hours=float(config.get("service_window_hours", 48)))
        self.quota_retry = float(config.get("quota_retry_seconds", 600))
        self.max_bytes = int(config.get("text_max_bytes", 2000))
        self.templates: dict[str, Any] = dict(config.get("templates") or {})
        self.limits = RateLimit(per_second=float(config.get("per_second", 20)),
                                per_recipient_interval=float(config.get("per_recipient_interval", 1.0)))
        self.replies = reply_threads(CHANNEL, config)

    async def send(self, request: SendRequest) -> SendResult:
        if request.kind == "reply" or await self._window_open(request.address):
            verdict = await self._custom(request)
            if verdict.outcome is not Outcome.WINDOW:
                return to_result(verdict, self.quota_retry)
        template = render(self.templates, request.kind, request.payload,
                          self.app.services.local(self.app.services.now()))
        if template is not None:
            verdict = await self._template(request, template)
            if verdict.outcome is not Outcome.WINDOW:
                return to_result(verdict, self.quota_retry)
        await self._ask_volunteer_to_call(request)
        return SendResult.failed("window")

    # ------------------------------------------------------------------ API calls

    async def _api(self, request: SendRequest, fn: Any) -> Verdict:
        return (await call_api(self.client, CHANNEL, fn, threads_for(request, self.replies)))[0]

    async def _custom(self, request: SendRequest) -> Verdict:
        verdict = Verdict(Outcome.SENT, "")
        for piece in split_text(numbered_text(request.payload), self.max_bytes):
            verdict = await self._api(request, lambda piece=piece: self.client.message.send_text(
                request.address, piece))
            if verdict.outcome is not Outcome.SENT:
                return verdict
        attachment = request.payload.get("attachment")
        if attachment and attachment.get("kind") == "photo":  # an Official Account cannot send files
            return await send_picture(self.client, CHANNEL, attachment,
                                      lambda media_id: self.client.message.send_image(request.address, media_id),
                                      threads=threads_for(request, self.replies))
        return verdict

    async def _template(self, request: SendRequest, template: TemplateMessage) -> Verdict:
        return await self._api(request, lambda: self.client.message.send_template(
            request.address, template.template_id, template.data, url=template.url))

    # ------------------------------------------------------------------ the database side

    async def _window_open(self, openid: str) -> bool:
        async with self.app.db.async_session() as session:
            last = await session.scalar(select(ChannelAddress.last_inbound_at).where(
                ChannelAddress.channel == CHANNEL, ChannelAddress.address == openid))
        return last is not None and self.app.services.now() - last < self.window

    async def _ask_volunteer_to_call(self, request: SendRequest) -> None:
        """One open call task per family member, for their contact volunteer."""
        text = str(request.payload.get("text") or "").strip()
        excerpt = text.splitlines()[0][:60] if text else ""
        async with self.app.db.async_session() as session:
            person_id = request.person_id or await session.scalar(select(ChannelAddress.person_id).where(
                ChannelAddress.channel == CHANNEL, ChannelAddress.address == request.address))
            if person_id is not None:
                await ask_volunteer_to_call(session, person_id, catalog.t("wechat.call_reason", excerpt=excerpt),
                                            self.app.services.now())
