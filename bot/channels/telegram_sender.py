"""Turning one outbox payload into Telegram Bot API calls, and Telegram's errors into SendResults.

The payload is channel-neutral (text, options with opaque tokens, an optional attachment); here
options become an inline keyboard whose callback data is the token, so the server alone knows
what a button means. The sender never touches the database: the fast path and the delivery
worker apply the result through `bot.delivery.outcome`.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBUserWarning

from bot.channels.render import numbered_text
from bot.delivery.base import RateLimit, SendRequest, SendResult
from storage.models import OutboxLane

log = logging.getLogger("warmline.telegram")

CHANNEL = "telegram"
MAX_TEXT = 4000  # Telegram allows 4096 characters; leave room for UTF-16 surrogate pairs
MAX_CAPTION = 1000  # Telegram allows 1024
MAX_CALLBACK_BYTES = 64
# Extra keys a channel may add to a payload copy before sending (never stored in the outbox).
KEYBOARD_KEY = "telegram_keyboard"  # "contact": offer the share-contact button; "remove": hide it
CONTACT_LABEL_KEY = "telegram_contact_label"

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove

# sendMessage goes through `do_api_request` on purpose (see `_send_text`); PTB suggests the method
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.sendMessage'", category=PTBUserWarning)


def retry_after_seconds(exc: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds, whichever type this PTB version returns."""
    with warnings.catch_warnings():  # PTB 22 warns that the int form is deprecated
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Cut a long text into messages Telegram accepts, at line breaks where possible."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest:
        parts.append(rest)
    return parts


def _usable_token(token: object) -> bool:
    return isinstance(token, str) and 0 < len(token.encode()) <= MAX_CALLBACK_BYTES


def render(payload: dict[str, Any]) -> tuple[str, Markup | None]:
    """The message text and its keyboard.

    Options with tokens become one inline button per row (big targets on a phone). If any option
    lacks a usable token, all options are written as numbered lines instead: typing the number
    works everywhere, and a button that means nothing would be worse than none.
    """
    options = payload.get("options") or []
    text = str(payload.get("text") or "")
    if options:
        if all(_usable_token(o.get("token")) for o in options):
            return text, InlineKeyboardMarkup(
                [[InlineKeyboardButton(str(o["label"]), callback_data=str(o["token"]))] for o in options])
        return numbered_text(payload), None
    keyboard = payload.get(KEYBOARD_KEY)
    if keyboard == "contact":
        label = str(payload.get(CONTACT_LABEL_KEY) or "📱")
        return text, ReplyKeyboardMarkup([[KeyboardButton(label, request_contact=True)]],
                                         resize_keyboard=True, one_time_keyboard=True)
    if keyboard == "remove":
        return text, ReplyKeyboardRemove()
    return text, None


class _Pacer:
    """Keeps this process under Telegram's overall rate, for the worker and the fast path alike
    (the fast path answers many people at once when a township's volunteers all report).

    Each send takes the next free slot as it arrives; replies without waiting (see wait_turn).
    """

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.next_at = 0.0

    async def wait_turn(self, lane: int = OutboxLane.ALERT) -> None:
        """Take the next slot. A reply (INTERACTIVE) takes it at once and pushes the others
        back: Telegram's ~30/s is the limit for bulk notifications, and a person waiting for an
        answer must not queue behind one. Bulk never books more than one slot ahead, so it
        never builds a queue for a reply or an alert to wait behind."""
        loop = asyncio.get_running_loop()
        if lane <= OutboxLane.INTERACTIVE:
            self.next_at = max(loop.time(), self.next_at) + self.interval
            return
        while lane >= OutboxLane.BULK and self.next_at - loop.time() > self.interval:
            await asyncio.sleep(self.next_at - loop.time() - self.interval)
        now = loop.time()
        slot = max(now, self.next_at)
        self.next_at = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class _FloodWaits:
    """What Telegram's 429s said: how long each chat must wait, and how long bulk sends hold off.

    A 429 names one chat's wait; the outbox already holds that chat's next messages until then
    (the refused row is due again after exactly `retry_after`). Bulk sends to anyone stop for the
    same time, so a broadcast does not deepen the flood while people's replies still go out.
    """

    def __init__(self) -> None:
        self.chats: dict[int, float] = {}
        self.bulk_until = 0.0

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def wait_left(self, chat_id: int, *, bulk: bool) -> float:
        now = self._now()
        left = self.chats.get(chat_id, 0.0) - now
        if bulk:
            left = max(left, self.bulk_until - now)
        return max(0.0, left)

    def hold_bulk(self, seconds: float) -> None:
        self.bulk_until = max(self.bulk_until, self._now() + seconds)

    def refused(self, chat_id: int, seconds: float) -> None:
        now = self._now()
        self.chats[chat_id] = max(self.chats.get(chat_id, 0.0), now + seconds)
        self.hold_bulk(seconds)
        if len(self.chats) > 1000:  # forget waits long over
            self.chats = {c: t for c, t in self.chats.items() if t > now}


class TelegramSender:
    """The delivery worker's and the fast path's way to Telegram (ChannelSender)."""

    channel = CHANNEL
    # Telegram allows about 30 messages/s overall and 1/s per chat. Pacing exactly at the limit
    # lets network jitter cross it (a 429 every ~2 s, ~60% of the rate, measured in
    # benchmarks/delivery_rate.py); 3% under it gives 97% of the limit and no 429s.
    limits = RateLimit(per_second=30 * 0.97, per_recipient_interval=1 * 1.03)

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._pacer = _Pacer(self.limits.per_second)
        self._floods = _FloodWaits()
        # told of every 429 (its retry_after): a helper process passes it to the main process,
        # whose delivery worker sends the bulk (bot/channels/step_processes.py)
        self.on_refused: Callable[[float], None] | None = None

    def hold_bulk(self, seconds: float) -> None:
        """Bulk sends wait `seconds`: a 429 met by another process of this bot."""
        self._floods.hold_bulk(seconds)

    async def send(self, request: SendRequest) -> SendResult:
        try:
            chat_id = int(request.address)
        except ValueError:
            return SendResult.failed("bad_address")
        waiting = self._floods.wait_left(chat_id, bulk=request.bulk)
        if waiting > 0:  # Telegram asked us to wait: do not make the flood worse
            return SendResult.held("flood_wait", retry_after=waiting)
        try:
            message = await self._deliver(chat_id, request.payload, lane=request.lane)
        except RetryAfter as exc:
            seconds = retry_after_seconds(exc)
            self._floods.refused(chat_id, seconds)
            if self.on_refused is not None:
                self.on_refused(seconds)
            return SendResult.retry("429", retry_after=seconds)
        except Forbidden as exc:  # blocked by the user, or the account was deactivated
            return SendResult.failed(_short("forbidden", exc), unreachable=True)
        except ChatMigrated:
            return SendResult.failed("chat_migrated")
        except BadRequest as exc:  # before NetworkError: BadRequest is a subclass of it
            if "chat not found" in exc.message.lower():
                return SendResult.failed("chat_not_found")
            return SendResult.failed(_short("bad_request", exc))
        except InvalidToken:
            log.error("the Bot API rejected the token; check WARMLINE_TELEGRAM_TOKEN")
            return SendResult.retry("invalid_token")
        except NetworkError as exc:  # includes TimedOut
            return SendResult.retry(_short(type(exc).__name__, exc))
        except TelegramError as exc:
            return SendResult.retry(_short("telegram_error", exc))
        except FileNotFoundError:
            return SendResult.failed("attachment_missing")
        except Exception as exc:  # a bug or a closed client: retry later, keep the message
            log.warning("telegram send failed error=%s", type(exc).__name__)
            return SendResult.retry(type(exc).__name__)
        if message is None:
            return SendResult.failed("empty_message")
        return SendResult.sent(message or None)  # "" if the Bot API named no message id

    async def _deliver(self, chat_id: int, payload: dict[str, Any], *,
                       lane: int = OutboxLane.ALERT) -> str | None:
        """Send the payload; the platform's id of the (last) message, None if there was nothing."""
        text, markup = render(payload)
        attachment = payload.get("attachment")
        if attachment:
            return str((await self._send_file(chat_id, attachment, text, markup, lane=lane)).message_id)
        if not text.strip():
            return None
        if payload.get(KEYBOARD_KEY) == "remove" and isinstance(markup, InlineKeyboardMarkup):
            # one keyboard per message: the reply keyboard goes with the text before the menu
            head, _, tail = text.rpartition("\n\n")
            if head:
                await self._pacer.wait_turn(lane)
                await self._send_text(chat_id, head, ReplyKeyboardRemove())
                text = tail
        chunks = split_text(text)
        for chunk in chunks[:-1]:
            await self._pacer.wait_turn(lane)
            await self._send_text(chat_id, chunk, None)
        await self._pacer.wait_turn(lane)
        return await self._send_text(chat_id, chunks[-1], markup)

    async def _send_text(self, chat_id: int, text: str, markup: Markup | None) -> str:
        """sendMessage through PTB's request layer (its errors, its serialising of the keyboard),
        without building a `Message` from the answer: only its id is kept, and parsing the whole
        message back cost about a tenth of a reply's CPU."""
        arguments: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if markup is not None:
            arguments["reply_markup"] = markup
        answer = await self.bot.do_api_request("sendMessage", api_kwargs=arguments)
        return str(answer["message_id"]) if isinstance(answer, dict) else ""

    async def _send_file(self, chat_id: int, attachment: dict[str, Any], text: str,
                         markup: Markup | None, *, lane: int = OutboxLane.ALERT) -> Message:
        """A chart as a photo, anything else as a document; a long text follows as messages."""
        path = Path(str(attachment.get("path") or ""))
        if not path.is_file():
            raise FileNotFoundError(path.name)
        filename = attachment.get("filename") or path.name
        caption_fits = len(text) <= MAX_CAPTION
        await self._pacer.wait_turn(lane)
        with path.open("rb") as fh:
            file_kw: dict[str, Any] = {
                "caption": (text or None) if caption_fits else None,
                "reply_markup": markup if caption_fits else None,
                "filename": filename,
            }
            if attachment.get("kind") == "photo":
                message = await self.bot.send_photo(chat_id, photo=fh, **file_kw)
            else:
                message = await self.bot.send_document(chat_id, document=fh, **file_kw)
        if caption_fits:
            return message
        chunks = split_text(text)
        for i, chunk in enumerate(chunks):
            await self._pacer.wait_turn(lane)
            message = await self.bot.send_message(
                chat_id, chunk, reply_markup=markup if i == len(chunks) - 1 else None)
        return message


def _short(kind: str, exc: TelegramError) -> str:
    """An error note for the outbox row: Telegram's description, which names no person."""
    return f"{kind}: {exc.message}"[:200]
