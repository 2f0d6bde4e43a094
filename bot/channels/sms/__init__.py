"""SMS for families who have only a basic phone: greetings out, 退订 and words back.

Outbound, the delivery worker hands `sms` outbox rows to the SmsSender (templates, quiet hours,
per-number limits). Inbound, the provider posts receipts to `/sms/report` and replies to
`/sms/up`. Neither Alibaba Cloud nor Tencent Cloud signs these pushes, so they are guarded the
way their documentation leaves to the receiver: the URL entered in the provider's console
carries a long random token (`?token=…`, WARMLINE_SMS_CALLBACK_TOKEN, compared in constant
time), the source address can be restricted (`[sms] callback_allowed_ips`), and a receipt only
counts when it names a message we sent to that very number. Without a token the callbacks are
not served at all.

Settings: WARMLINE_SMS_PROVIDER (aliyun or tencent; tencent also needs WARMLINE_SMS_SDK_APP_ID), WARMLINE_SMS_ACCESS_KEY_ID,
WARMLINE_SMS_ACCESS_KEY_SECRET, WARMLINE_SMS_SIGN_NAME, WARMLINE_SMS_API_BASE,
WARMLINE_SMS_CALLBACK_TOKEN; numbers and templates in `[sms]` (bot/defaults/sms.toml).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.channels.sms.aliyun import DEFAULT_API_BASE as ALIYUN_API_BASE
from bot.channels.sms.aliyun import AliyunSms
from bot.channels.sms.callbacks import apply_receipts, handle_replies
from bot.channels.sms.provider import CallbackRejected, SmsProvider
from bot.channels.sms.sender import CHANNEL, SmsSender
from bot.channels.sms.tencent import DEFAULT_API_BASE as TENCENT_API_BASE
from bot.channels.sms.tencent import TencentSms
from bot.config import ConfigError

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.sms")

PROVIDERS = ("aliyun", "tencent")
REQUIRED = ("WARMLINE_SMS_ACCESS_KEY_ID", "WARMLINE_SMS_ACCESS_KEY_SECRET", "WARMLINE_SMS_SIGN_NAME")
MAX_CALLBACK_BYTES = 262_144
REPORT_PATH = "/sms/report"
UP_PATH = "/sms/up"


def build_provider(app: App, name: str) -> SmsProvider:
    env = app.settings.get_env
    timeout = float(app.settings.section("sms").get("http_timeout_seconds", 8))
    if name == "aliyun":
        return AliyunSms(str(env("WARMLINE_SMS_ACCESS_KEY_ID")), str(env("WARMLINE_SMS_ACCESS_KEY_SECRET")),
                         api_base=env("WARMLINE_SMS_API_BASE") or ALIYUN_API_BASE, timeout=timeout)
    if name == "tencent":
        app_id = env("WARMLINE_SMS_SDK_APP_ID")
        if not app_id:
            raise ConfigError("Tencent Cloud SMS needs WARMLINE_SMS_SDK_APP_ID (the SmsSdkAppId)")
        return TencentSms(str(env("WARMLINE_SMS_ACCESS_KEY_ID")), str(env("WARMLINE_SMS_ACCESS_KEY_SECRET")),
                          app_id, api_base=env("WARMLINE_SMS_API_BASE") or TENCENT_API_BASE, timeout=timeout)
    raise ConfigError(f"WARMLINE_SMS_PROVIDER must be one of {', '.join(PROVIDERS)}, not {name!r}")


def from_app(app: App) -> SmsChannel | None:
    """The channel when WARMLINE_SMS_PROVIDER is set; an error when it is half configured."""
    name = (app.settings.get_env("WARMLINE_SMS_PROVIDER") or "").strip().lower()
    if not name:
        return None
    missing = [n for n in REQUIRED if not app.settings.get_env(n)]
    if missing:
        raise ConfigError(f"SMS is half configured; missing {', '.join(missing)}")
    provider = build_provider(app, name)
    sender = SmsSender(app, provider, str(app.settings.get_env("WARMLINE_SMS_SIGN_NAME")))
    return SmsChannel(app, provider, sender, app.settings.get_env("WARMLINE_SMS_CALLBACK_TOKEN"))


class SmsChannel:
    name = CHANNEL

    def __init__(self, app: App, provider: SmsProvider, sender: SmsSender, callback_token: str | None) -> None:
        self.app = app
        self.provider = provider
        self._sender = sender
        self._token = callback_token
        self._allowed = {str(ip) for ip in app.settings.section("sms").get("callback_allowed_ips", [])}
        if not callback_token:
            log.warning("WARMLINE_SMS_CALLBACK_TOKEN is not set: receipts and replies (退订) are not received")

    def routes(self) -> list[BaseRoute]:
        if not self._token:
            return []
        return [Route(REPORT_PATH, self.report, methods=["POST"]), Route(UP_PATH, self.up, methods=["POST"])]

    def sender(self) -> SmsSender:
        return self._sender

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.provider.aclose()

    async def report(self, request: Request) -> Response:
        async def work(body: bytes, headers: dict[str, str]) -> None:
            await apply_receipts(self.app, self.provider.receipts(body, headers))
        return await self._callback(request, work)

    async def up(self, request: Request) -> Response:
        async def work(body: bytes, headers: dict[str, str]) -> None:
            await handle_replies(self.app, self._sender, self.provider.replies(body, headers))
        return await self._callback(request, work)

    async def _callback(self, request: Request,
                        work: Callable[[bytes, dict[str, str]], Awaitable[None]]) -> Response:
        token = request.query_params.get("token", "")
        if not self._token or not hmac.compare_digest(token.encode(), self._token.encode()):
            return Response(status_code=403)
        if self._allowed and (request.client is None or request.client.host not in self._allowed):
            return Response(status_code=403)
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            return Response(status_code=400)
        if length > MAX_CALLBACK_BYTES:
            return Response(status_code=413)
        try:
            body = await request.body()
        except ClientDisconnect:
            return Response(status_code=400)
        if len(body) > MAX_CALLBACK_BYTES:
            return Response(status_code=413)
        try:
            await work(body, {k.lower(): v for k, v in request.headers.items()})
        except CallbackRejected as exc:
            log.warning("sms callback refused: %s", exc)
            return JSONResponse({"code": 1, "msg": "bad request"}, status_code=400)
        except Exception as exc:  # the provider re-pushes on a non-200: nothing is lost
            log.error("sms callback failed error=%s", type(exc).__name__)
            return JSONResponse({"code": 1, "msg": "retry"}, status_code=503)
        return JSONResponse(self.provider.acknowledgement())
