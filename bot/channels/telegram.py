"""The Telegram channel: python-telegram-bot's `Application` feeding updates to the dialog runner.

PTB only parses updates and talks HTTP here; conversation state lives in our database, so the
process can die between any two updates. Updates arrive by long polling (our own getUpdates
loop, which confirms an update only once it and every earlier one were handled, so a crash
re-delivers it and the runner's dedupe on update_id drops what was already done) or by webhook
on `/telegram` of the one HTTP app, guarded by Telegram's secret-token header.

Either way updates go through a `KeyedDispatcher` keyed by chat: different chats are handled
side by side (at most `[core] max_concurrent_steps` at once), one chat's updates strictly in the
order they arrived. With `[core] step_processes` above 1 the chats are shared out among helper
processes, each chat always to the same one (bot/channels/step_processes.py).

Mapping: address = chat id; message_id = "u<update_id>"; a button press carries its opaque
option token; `/start <code>` is a deep-link registration; a shared contact is matched by phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from telegram import CallbackQuery, Message, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler
from telegram.warnings import PTBUserWarning

from bot.channels.dispatch import STOP_GRACE_SECONDS, KeyedDispatcher, max_concurrent_steps
from bot.channels.step_processes import StepProcesses, raw_chat_key
from bot.channels.telegram_http import AiohttpRequest
from bot.channels.telegram_sender import (
    CHANNEL,
    CONTACT_LABEL_KEY,
    KEYBOARD_KEY,
    TelegramSender,
    retry_after_seconds,
)
from bot.config import ConfigError
from bot.delivery.fastpath import deliver_now
from bot.delivery.outcome import RetryPolicy
from dialogs.engine import catalog
from dialogs.engine.runner import Handled
from dialogs.engine.types import Inbound, Outgoing
from storage.models import Lease

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.telegram")

PUBLIC_API = "https://api.telegram.org"
MODES = ("polling", "webhook")
ALLOWED_UPDATES = ["message", "callback_query"]
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts as secret_token
COMMAND_MENTION = re.compile(r"^(/\w+)@\w+")
USERNAME_LEASE = "telegram:bot_username"
WEBHOOK_PATH = "/telegram"
MAX_IN_FLIGHT = 100  # getUpdates returns at most 100 updates: the unconfirmed window
BUSY_POLL_SECONDS = 0.05  # while steps run, how long to wait for one to finish before asking again

# The poller fetches raw updates (Bot.do_api_request) so updates already being handled, which
# getUpdates returns again until they are confirmed, are not parsed again; PTB warns about that
# use of getUpdates, and only that warning is silenced.
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.getUpdates'", category=PTBUserWarning)


@dataclass(frozen=True)
class TelegramConfig:
    token: str
    base_url: str = PUBLIC_API
    mode: str = "polling"
    webhook_secret: str | None = None
    webhook_url: str | None = None
    poll_timeout: float = 25.0
    max_body_bytes: int = 1_048_576
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0

    @classmethod
    def from_settings(cls, settings: Any) -> TelegramConfig | None:
        """None when no token is set (the channel is off); ConfigError when it cannot work."""
        token = settings.get_env("WARMLINE_TELEGRAM_TOKEN")
        if not token:
            return None
        section = settings.section("telegram")
        mode = (settings.get_env("WARMLINE_TELEGRAM_MODE", "polling") or "polling").strip().lower()
        if mode not in MODES:
            raise ConfigError(f"WARMLINE_TELEGRAM_MODE must be polling or webhook, not {mode!r}")
        secret = settings.get_env("WARMLINE_TELEGRAM_WEBHOOK_SECRET")
        url = settings.get_env("WARMLINE_TELEGRAM_WEBHOOK_URL")
        if mode == "webhook":
            if not secret or not SECRET_PATTERN.match(secret):
                raise ConfigError("webhook mode needs WARMLINE_TELEGRAM_WEBHOOK_SECRET "
                                  "(1-256 characters: letters, digits, _ and -)")
            if not url or not url.startswith(("https://", "http://")):
                raise ConfigError("webhook mode needs WARMLINE_TELEGRAM_WEBHOOK_URL, the public "
                                  "https address that reaches /telegram")
        base = (settings.get_env("WARMLINE_TELEGRAM_BASE_URL", PUBLIC_API) or PUBLIC_API).rstrip("/")
        base = base.removesuffix("/bot")
        return cls(token=token, base_url=base, mode=mode, webhook_secret=secret, webhook_url=url,
                   poll_timeout=float(section.get("poll_timeout_seconds", 25)),
                   max_body_bytes=int(section.get("webhook_max_body_bytes", 1_048_576)),
                   reconnect_min=float(section.get("reconnect_min_seconds", 1)),
                   reconnect_max=float(section.get("reconnect_max_seconds", 60)))


def from_app(app: App) -> TelegramChannel | None:
    config = TelegramConfig.from_settings(app.settings)
    if config is None:
        return None
    # httpx logs every request URL at INFO, and Bot API URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return TelegramChannel(app, config)


def stored_bot_username(session: Session) -> str | None:
    """The bot's @username as last learnt from getMe (for printing t.me deep links offline)."""
    lease = session.get(Lease, USERNAME_LEASE)
    return lease.value if lease is not None and lease.value else None


def build_application(config: TelegramConfig) -> Application:
    return (ApplicationBuilder().token(config.token)
            .base_url(f"{config.base_url}/bot").base_file_url(f"{config.base_url}/file/bot")
            .request(AiohttpRequest(256)).get_updates_request(AiohttpRequest(1))
            .updater(None).build())


def inbound_of(update: Update) -> Inbound | None:
    """What a person did, in the runner's words; None for what Warmline does not handle.

    Only private chats count: in a group every member would share one address, and so one
    person's records.
    """
    message_id = f"u{update.update_id}"
    query = update.callback_query
    if query is not None:
        message = query.message
        if message is None or message.chat.type != "private" or not query.data:
            return None
        return Inbound(CHANNEL, str(message.chat.id), option_token=query.data,
                       message_id=message_id, display_name=_name(query.from_user))
    message = update.message
    if message is None or message.chat.type != "private":
        return None
    address = str(message.chat.id)
    name = _name(message.from_user)
    contact = message.contact
    if contact is not None:
        own = message.from_user is not None and contact.user_id == message.from_user.id
        # someone else's contact card must not log anyone in: ask for a code instead
        return Inbound(CHANNEL, address, contact_phone=contact.phone_number if own else None,
                       message_id=message_id, display_name=name)
    text = message.text or message.caption or ""
    text = COMMAND_MENTION.sub(r"\1", text)
    command, _, rest = text.partition(" ")
    if command == "/start" and rest.strip():
        return Inbound(CHANNEL, address, start_payload=rest.strip()[:64], message_id=message_id,
                       display_name=name)
    return Inbound(CHANNEL, address, text=text, message_id=message_id, display_name=name)


def _name(user: Any) -> str | None:
    return user.full_name[:100] if user is not None and user.full_name else None


def chosen_label(query: CallbackQuery) -> str | None:
    """The label of the pressed button, if it really is one of that message's buttons."""
    message = query.message
    markup = getattr(message, "reply_markup", None)
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data == query.data:
                return button.text
    return None


@dataclass
class UpdateWindow:
    """The polling offset: never past an update whose step is not committed.

    Telegram forgets every update below the offset of the next getUpdates call, and returns
    every update at or above it again. Updates are handled concurrently, so they finish out of
    order; the offset is the oldest one still in flight (or one past the newest seen). Updates
    that come back while in flight are recognised by id (Telegram numbers them increasingly)
    and not handled twice; after a crash they come back to a new process, whose runner drops
    any whose step had committed.
    """

    highest: int | None = None
    in_flight: set[int] = field(default_factory=set)

    @property
    def offset(self) -> int | None:
        if self.in_flight:
            return min(self.in_flight)
        return None if self.highest is None else self.highest + 1

    def fresh(self, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The updates of a getUpdates answer not seen before, oldest first; marks them in flight."""
        new = []
        for data in raw:
            uid = data.get("update_id") if isinstance(data, dict) else None
            if not isinstance(uid, int) or (self.highest is not None and uid <= self.highest):
                continue
            self.highest = uid
            self.in_flight.add(uid)
            new.append(data)
        return new

    def done(self, uid: int) -> None:
        self.in_flight.discard(uid)


def chat_key(update: Update) -> str:
    """The dispatcher key: the chat (an update without one is on its own)."""
    chat = update.effective_chat
    return str(chat.id) if chat is not None else f"update:{update.update_id}"


class TelegramChannel:
    """One bot token, in polling or webhook mode; see the module docstring."""

    name = CHANNEL

    def __init__(self, app: App, config: TelegramConfig,
                 application: Application | None = None) -> None:
        self.app = app
        self.config = config
        self.application = application or build_application(config)
        self.application.add_handler(TypeHandler(Update, self._on_update))
        self.application.add_error_handler(self._on_error)
        self._sender = TelegramSender(self.application.bot)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dispatch: KeyedDispatcher | None = None
        self._limit = max_concurrent_steps(app.settings)
        self._policy = RetryPolicy.from_settings(app.settings)
        self._shared: StepProcesses | None = None  # helper processes for other chats' steps

    @property
    def dispatcher(self) -> KeyedDispatcher:
        """Made on first use, inside the running loop."""
        if self._dispatch is None:
            self._dispatch = KeyedDispatcher(self._limit, name="telegram")
        return self._dispatch

    # ------------------------------------------------------------ Channel API

    def routes(self) -> list[BaseRoute]:
        if self.config.mode != "webhook":
            return []
        return [Route(WEBHOOK_PATH, self.webhook, methods=["POST"])]

    def sender(self) -> TelegramSender:
        return self._sender

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telegram")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._dispatch is not None:  # steps under way may commit; the rest come again
            await self._dispatch.close(STOP_GRACE_SECONDS)
        with contextlib.suppress(Exception):
            await self.application.shutdown()

    # -------------------------------------------------------------- lifecycle

    async def _run(self) -> None:
        await self.connect()
        if self.config.mode == "webhook":
            await self._retrying("set webhook", self._set_webhook)
            self._ready.set()
            log.info("telegram webhook registered")
            return
        await self._retrying("delete webhook", self._delete_webhook)
        self._ready.set()
        log.info("telegram polling")
        await self._poll()

    async def _connect(self) -> None:
        await self.application.initialize()  # getMe: checks the token, learns the username
        username = self.application.bot.username
        async with self.app.db.async_session() as session:
            lease = await session.get(Lease, USERNAME_LEASE)
            if lease is None:
                session.add(Lease(name=USERNAME_LEASE, value=username))
            else:
                lease.value = username

    async def _set_webhook(self) -> None:
        await self.application.bot.set_webhook(
            url=str(self.config.webhook_url), secret_token=self.config.webhook_secret,
            allowed_updates=ALLOWED_UPDATES)

    async def _delete_webhook(self) -> None:
        await self.application.bot.delete_webhook(drop_pending_updates=False)

    async def _retrying(self, what: str, step: Any) -> None:
        """Run a start-up step until it works: a Bot API outage at boot must not end the service."""
        delay = self.config.reconnect_min
        while True:
            try:
                await step()
                return
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except InvalidToken:
                log.error("telegram %s: the Bot API rejected WARMLINE_TELEGRAM_TOKEN", what)
            except Exception as exc:  # the Bot API or the database away: not the end of the service
                log.warning("telegram %s failed error=%s; retrying in %.0fs", what,
                            type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(self.config.reconnect_max, delay * 2)

    async def _poll(self) -> None:
        """getUpdates, hand each new update to the dispatcher, ask again; see `UpdateWindow`.

        While steps are running, getUpdates answers at once with the unconfirmed ones; when an
        answer brings nothing new the loop waits for a step to finish (or BUSY_POLL_SECONDS, so
        a new chat is not held up by one slow step) instead of asking in a tight loop. While
        steps wait for a free slot it does not ask either, until they stop waiting (or
        BUSY_POLL_SECONDS): new updates would only queue behind them, and each answer repeats
        every unconfirmed update. Measured with 200 volunteers on PostgreSQL
        (benchmarks/telegram_e2e.py), that took getUpdates calls from ~650 to ~230 a run and
        5 % of the bot's CPU a step.
        """
        window = UpdateWindow()
        progress = asyncio.Event()
        delay = self.config.reconnect_min
        bot = self.application.bot
        timeout = int(self.config.poll_timeout)
        while True:
            progress.clear()
            try:
                raw = await bot.do_api_request(
                    "getUpdates", api_kwargs={"offset": window.offset, "timeout": timeout,
                                              "allowed_updates": ALLOWED_UPDATES},
                    read_timeout=timeout + 10)
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except (Conflict, TelegramError, OSError) as exc:
                log.warning("telegram getUpdates failed error=%s; retrying in %.0fs",
                            type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(self.config.reconnect_max, delay * 2)
                continue
            delay = self.config.reconnect_min
            fresh = window.fresh(raw if isinstance(raw, list) else [])
            for data in fresh:
                self._dispatch_polled(data, window, progress)
            if window.in_flight and (not fresh or len(window.in_flight) >= MAX_IN_FLIGHT):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(progress.wait(), BUSY_POLL_SECONDS)
            elif self.dispatcher.queued:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.dispatcher.wait_for_room(), BUSY_POLL_SECONDS)

    def _dispatch_polled(self, data: dict[str, Any], window: UpdateWindow,
                         progress: asyncio.Event) -> None:
        uid = int(data["update_id"])

        def finished() -> None:
            window.done(uid)
            progress.set()

        if self._shared is not None and self._shared.submit(data, raw_chat_key(data), finished):
            return  # its chat's steps run in a helper process (bot/channels/step_processes.py)
        self.run_update(data, finished)

    def run_update(self, data: dict[str, Any], finished: Callable[[], None]) -> None:
        """Parse an update as Telegram sent it and queue its step behind its chat's earlier
        ones; `finished` is called once the step is done (at once if it is not an update)."""
        try:
            update = Update.de_json(data, self.application.bot)
        except Exception as exc:  # not an update PTB understands: confirm it, do nothing
            log.warning("telegram update not understood error=%s", type(exc).__name__)
            finished()
            return
        job = self.dispatcher.submit(chat_key(update),
                                     lambda: self.application.process_update(update))
        job.add_done_callback(lambda _job: finished())

    def share(self, shared: StepProcesses | None, steps: int) -> None:
        """One of several step processes (before it starts): it runs `steps` steps at once, and
        the poller sends the updates of chats that belong to a helper to `shared`."""
        self._shared = shared
        self._limit = steps

    async def connect(self, *, remember_name: bool = True) -> None:
        """Check the token with the Bot API (until it answers); the poller also stores the bot's
        username (its helper processes leave that to it: two writers of one new row collide)."""
        await self._retrying("connect", self._connect if remember_name else self.application.initialize)

    # ---------------------------------------------------------------- webhook

    async def webhook(self, request: Request) -> Response:
        """Telegram's POST: secret first, then size, then JSON; answered once handled."""
        secret = request.headers.get(SECRET_HEADER, "")
        expected = self.config.webhook_secret or ""
        if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
            return Response(status_code=403)
        body = await self._read_body(request)
        if body is None:
            return Response("too large", status_code=413)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return Response("malformed JSON", status_code=400)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return Response("not a Telegram update", status_code=400)
        if not self._ready.is_set():
            return Response("starting", status_code=503)  # Telegram will deliver it again
        try:
            update = Update.de_json(data, self.application.bot)
        except Exception:
            return Response("not a Telegram update", status_code=400)
        if self._shared is not None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def finished() -> None:
                if not done.done():
                    done.set_result(None)

            if self._shared.submit(data, chat_key(update), finished):
                await done  # answered once the helper process that runs this chat is done
                return Response(status_code=200)
        await self.dispatcher.run(chat_key(update),
                                  lambda: self.application.process_update(update))
        return Response(status_code=200)

    async def _read_body(self, request: Request) -> bytes | None:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
        except ClientDisconnect:
            return b""
        return b"".join(chunks)

    # ----------------------------------------------------------------- updates

    async def _on_update(self, update: object, _context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(update, Update):
            await self.handle_update(update)

    async def _on_error(self, _update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # PTB would log the whole update (names, texts): log only what kind of error it was.
        log.error("telegram update failed error=%s", type(context.error).__name__)

    async def handle_update(self, update: Update) -> None:
        """One update to the end: acknowledge a press, run the step, show the choice, reply.

        The dispatcher has already put this chat's earlier updates behind us. The button's
        spinner is stopped, and the pressed question marked, beside the step and its sending.
        """
        inbound = inbound_of(update)
        if inbound is None:
            return
        query = update.callback_query
        side: list[asyncio.Task[None]] = []
        if query is not None:
            side.append(asyncio.create_task(self._answer(query)))
        handled = await self.app.runner.handle_step(inbound)
        if query is not None:
            side.append(asyncio.create_task(self._show_choice(query)))
        try:
            await deliver_now(self.app.db, self._sender, with_keyboard(handled),
                              self.app.services.now, self._policy)
        except Exception as exc:  # the rows stay claimed; the delivery worker re-queues them
            log.error("telegram fast path failed error=%s", type(exc).__name__)
        await asyncio.gather(*side, return_exceptions=True)

    @staticmethod
    async def _answer(query: CallbackQuery) -> None:
        with contextlib.suppress(TelegramError):
            await query.answer()  # stop the button's spinner at once

    async def _show_choice(self, query: CallbackQuery) -> None:
        """Mark the pressed button's message with the choice and drop its keyboard, so the same
        question cannot be answered twice from an old message."""
        label = chosen_label(query)
        message = query.message
        if label is None or not isinstance(message, Message):
            return
        try:
            if message.text and len(message.text) + len(label) < 4000:
                await message.edit_text(f"{message.text}\n\n✅ {label}", reply_markup=None)
            else:
                await message.edit_reply_markup(reply_markup=None)
        except TelegramError as exc:  # too old to edit, or already edited by a double tap
            log.info("telegram could not mark the choice error=%s", type(exc).__name__)


def with_keyboard(handled: Handled) -> list[Outgoing]:
    """Offer a newcomer asked for a code the share-contact button; hide it once they are in."""
    outgoing = handled.outgoing
    if not handled.newcomer or not outgoing:
        return outgoing
    if handled.registered:
        # on the first message even if it has buttons: the sender then sends its last paragraph
        # (the menu) with the buttons as a message of its own, one keyboard per message
        return [_with(outgoing[0], {KEYBOARD_KEY: "remove"}), *outgoing[1:]]
    if handled.wants_contact:
        return _mark(outgoing, extra={
            KEYBOARD_KEY: "contact", CONTACT_LABEL_KEY: catalog.t("telegram.share_contact")},
            hint=catalog.t("telegram.or_share_contact"))
    return outgoing


def _mark(outgoing: list[Outgoing], *, extra: dict[str, Any],
          hint: str | None = None) -> list[Outgoing]:
    """Copies of the outgoing messages with a reply keyboard on the last one that has no inline
    buttons (Telegram allows one keyboard per message)."""
    for i in range(len(outgoing) - 1, -1, -1):
        message = outgoing[i]
        if message.payload.get("options") or message.payload.get("attachment"):
            continue
        payload = {**message.payload, **extra}
        if hint:
            payload["text"] = f"{payload.get('text', '')}\n{hint}"
        changed = replace(message, payload=payload)
        return [*outgoing[:i], changed, *outgoing[i + 1:]]
    return outgoing


def _with(message: Outgoing, extra: dict[str, Any]) -> Outgoing:
    return replace(message, payload={**message.payload, **extra})
