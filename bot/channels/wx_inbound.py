"""What the Official Account and WeCom webhooks share: a bounded body, safe XML, the 5-second budget.

WeChat waits five seconds for an answer and then retries the same message (three tries). A step
that finishes within the budget (default 4 s) is answered in the HTTP response itself (a passive
reply); a slower step gets an empty `success` now and its replies go out through the platform's
send API from a background task as soon as the step commits, via the same fast path and outbox
rules as every other channel. If the process dies first, the rows stay claimed by the fast path
and the delivery worker sends them later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot.channels.render import numbered_text
from bot.delivery.base import ChannelSender
from bot.delivery.fastpath import deliver_now
from bot.delivery.outcome import RetryPolicy
from dialogs.engine.runner import Runner
from dialogs.engine.types import Inbound, Outgoing

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.wechat.inbound")

SUCCESS = "success"  # what WeChat expects when there is nothing to say right now
Prepare = Callable[[Inbound], Awaitable[Inbound]]
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


def combined_text(outgoing: Sequence[Outgoing]) -> str:
    """All of a step's replies as one text, options numbered: a passive reply holds one message."""
    return "\n\n".join(numbered_text(o.payload) for o in outgoing if o.payload.get("text") or o.payload.get("options"))


class ReplyPump:
    """Runs each step against the platform's answer budget and delivers what is not answered inline."""

    def __init__(self, runner: Runner, sender: ChannelSender, budget: float, max_passive_bytes: int,
                 now: Callable[[], datetime], policy: RetryPolicy | None = None) -> None:
        self.runner = runner
        self.policy = policy
        self.sender = sender
        self.budget = budget
        self.max_passive_bytes = max_passive_bytes
        self.now = now
        self._background: set[asyncio.Task[None]] = set()

    async def step(self, inbound: Inbound, prepare: Prepare | None = None) -> str | None:
        """The text to answer passively, or None when nothing is said now (later, or never).

        `prepare` may enrich the Inbound first (a WeCom mobile lookup); it counts toward the budget.
        """
        task = asyncio.ensure_future(self._run(inbound, prepare))
        handed_off = False
        try:
            await asyncio.wait({task}, timeout=self.budget)
            if not task.done():
                self._spawn(self._deliver_later(task))
                handed_off = True
                return None
            outgoing = task.result()
            handed_off = True
            if not outgoing:
                return None
            text = combined_text(outgoing)
            if (any(o.payload.get("attachment") for o in outgoing)
                    or len(text.encode()) > self.max_passive_bytes or not text):
                self._spawn(self._deliver(outgoing))
                return None
            await self.runner.mark_sent([o.outbox_id for o in outgoing if o.outbox_id])
            return text
        finally:
            if not handed_off:  # the request was cancelled mid-wait: still deliver the step's replies
                self._spawn(self._deliver_later(task))

    async def _run(self, inbound: Inbound, prepare: Prepare | None) -> list[Outgoing]:
        if prepare is not None:
            try:
                inbound = await prepare(inbound)
            except Exception as exc:  # enrichment is optional; the message itself must go through
                log.warning("inbound preparation failed error=%s", type(exc).__name__)
        return await self.runner.handle(inbound)

    async def _deliver_later(self, task: asyncio.Future[list[Outgoing]]) -> None:
        outgoing = await task
        await self._deliver(outgoing)

    async def _deliver(self, outgoing: list[Outgoing]) -> None:
        if outgoing:
            await deliver_now(self.runner.db, self.sender, outgoing, self.now, self.policy)

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background delivery failed error=%s", type(task.exception()).__name__)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for replies still being delivered (shutdown, tests)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)


class PumpedWebhookChannel:
    """What the Official Account and WeCom channels share: one webhook route that answers GET
    (the platform's URL check) and POST (messages), a sender, and a reply pump for the budget."""

    name: str
    path: str
    _sender: ChannelSender
    pump: ReplyPump

    def _start_pump(self, app: App, sender: ChannelSender, config: dict[str, Any]) -> None:
        self._sender = sender
        self.pump = ReplyPump(app.runner, sender, float(config.get("reply_budget_seconds", 4.0)),
                              int(config.get("text_max_bytes", 2000)), app.services.now,
                              RetryPolicy.from_settings(app.settings))

    def routes(self) -> list[BaseRoute]:
        return [Route(self.path, self.endpoint, methods=["GET", "POST"])]

    def sender(self) -> ChannelSender:
        return self._sender

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.pump.drain()

    async def endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            return self._verify(request)
        return await self._receive(request)

    def _verify(self, request: Request) -> Response:
        raise NotImplementedError

    async def _receive(self, request: Request) -> Response:
        raise NotImplementedError
