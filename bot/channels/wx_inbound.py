"""What the Official Account and WeCom webhooks share: one route, a bounded body, safe XML, the pump.

The route's first line takes the request's arrival time; the reply budget counts from there
(bot/channels/wx_pump.py). If the process dies before a step's replies are sent, the rows stay
claimed by the fast path and the delivery worker sends them later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot.channels.dispatch import max_concurrent_steps
from bot.channels.wx_pump import SUCCESS, ReplyPump
from bot.delivery.base import ChannelSender
from bot.delivery.outcome import RetryPolicy
from bot.http import arrived_at

if TYPE_CHECKING:
    from bot.app import App

FORBIDDEN_XML = (b"<!DOCTYPE", b"<!ENTITY", b"<!doctype", b"<!entity")


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it grows past `limit` bytes (WeChat posts are tiny)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def safe_xml(data: bytes | str) -> bool:
    """WeChat never sends a DTD; refusing one keeps entity tricks away from the XML parser."""
    raw = data.encode() if isinstance(data, str) else data
    return not any(marker in raw for marker in FORBIDDEN_XML)


def success() -> Response:
    return PlainTextResponse(SUCCESS)


def refuse(status: int, what: str) -> Response:
    """A short plain answer for a request that will not be processed; never a stack trace."""
    return PlainTextResponse(what, status_code=status)


class PumpedWebhookChannel:
    """What the Official Account and WeCom channels share: one webhook route that answers GET
    (the platform's URL check) and POST (messages), a sender, and a reply pump for the budget."""

    name: str
    path: str
    _sender: ChannelSender
    pump: ReplyPump
    wall_clock: Callable[[], float]  # the real time, as the platform's timestamps are

    def _start_pump(self, app: App, sender: ChannelSender, config: dict[str, Any]) -> None:
        self._sender = sender
        self.pump = ReplyPump(app.runner, sender, float(config.get("reply_budget_seconds", 4.0)),
                              int(config.get("text_max_bytes", 2000)), app.services.now,
                              RetryPolicy.from_settings(app.settings),
                              concurrency=max_concurrent_steps(app.settings),
                              max_queued=int(config.get("max_queued_steps", 5000)), name=self.name,
                              api_per_second=float(config.get("reply_per_second", 100)))

    def routes(self) -> list[BaseRoute]:
        return [Route(self.path, self.endpoint, methods=["GET", "POST"])]

    def sender(self) -> ChannelSender:
        return self._sender

    async def start(self) -> None:
        self.pump.lag.start()  # measured before the first request, so a morning's first burst counts it

    async def stop(self) -> None:
        await self.pump.drain()

    async def endpoint(self, request: Request) -> Response:
        arrived = arrived_at(request.scope)  # the platform's five seconds run from its arrival
        if request.method == "GET":
            return self._verify(request)
        deadline = self.pump.deadline(arrived, request.query_params.get("timestamp"), self.wall_clock)
        return await self._receive(request, deadline)

    def _verify(self, request: Request) -> Response:
        raise NotImplementedError

    async def _receive(self, request: Request, deadline: float) -> Response:
        raise NotImplementedError
