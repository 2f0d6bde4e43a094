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

from bot.channels.render import numbered_text
from bot.delivery.base import RateLimit, SendRequest, SendResult

log = logging.getLogger("warmline.telegram")

CHANNEL = "telegram"
MAX_TEXT = 4000  # Telegram allows 4096 characters; leave room for UTF-16 surrogate pairs
MAX_CAPTION = 1000  # Telegram allows 1024
MAX_CALLBACK_BYTES = 64
# Extra keys a channel may add to a payload copy before sending (never stored in the outbox).
KEYBOARD_KEY = "telegram_keyboard"  # "contact": offer the share-contact button; "remove": hide it
CONTACT_LABEL_KEY = "telegram_contact_label"

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


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
    """Keeps this process under Telegram's overall rate, and holds everything back after a 429.

    The delivery worker paces per recipient; this covers the fast path too, which answers many
    people at once when a township's volunteers are all reporting.
    """

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.next_at = 0.0
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause_remaining(self) -> float:
        return max(0.0, self.paused_until - asyncio.get_running_loop().time())

    def pause(self, seconds: float) -> None:
        now = asyncio.get_running_loop().time()
        self.paused_until = max(self.paused_until, now + seconds)

    async def wait_turn(self, wait: bool = True) -> None:
        """Take the next slot; `wait=False` (a reply to someone who just wrote) takes it at once
        and pushes the bulk sends behind it back instead: Telegram's ~30/s is the limit for
        bulk notifications, and a person waiting for an answer must not queue behind one."""
        if not wait:
            now = asyncio.get_running_loop().time()
            self.next_at = max(now, self.next_at) + self.interval
            return
        async with self._lock:
            now = asyncio.get_running_loop().time()
            delay = self.next_at - now
            if delay > 0:
                await asyncio.sleep(delay)
            self.next_at = max(now, self.next_at) + self.interval


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

    async def send(self, request: SendRequest) -> SendResult:
        waiting = self._pacer.pause_remaining()
        if waiting > 0:  # Telegram asked us to wait: do not make the flood worse
            return SendResult.retry("flood_wait", retry_after=waiting)
        try:
            chat_id = int(request.address)
        except ValueError:
            return SendResult.failed("bad_address")
        try:
            message = await self._deliver(chat_id, request.payload, paced=request.kind != "reply")
        except RetryAfter as exc:
            seconds = retry_after_seconds(exc)
            self._pacer.pause(seconds)
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
        return SendResult.sent(str(message.message_id))

    async def _deliver(self, chat_id: int, payload: dict[str, Any], *, paced: bool = True,
                       ) -> Message | None:
        text, markup = render(payload)
        attachment = payload.get("attachment")
        if attachment:
            return await self._send_file(chat_id, attachment, text, markup, paced=paced)
        if not text.strip():
            return None
        if payload.get(KEYBOARD_KEY) == "remove" and isinstance(markup, InlineKeyboardMarkup):
            # one keyboard per message: the reply keyboard goes with the text before the menu
            head, _, tail = text.rpartition("\n\n")
            if head:
                await self._pacer.wait_turn(paced)
                await self.bot.send_message(chat_id, head, reply_markup=ReplyKeyboardRemove())
                text = tail
        chunks = split_text(text)
        for chunk in chunks[:-1]:
            await self._pacer.wait_turn(paced)
            await self.bot.send_message(chat_id, chunk)
        await self._pacer.wait_turn(paced)
        return await self.bot.send_message(chat_id, chunks[-1], reply_markup=markup)

    async def _send_file(self, chat_id: int, attachment: dict[str, Any], text: str,
                         markup: Markup | None, *, paced: bool = True) -> Message:
        """A chart as a photo, anything else as a document; a long text follows as messages."""
        path = Path(str(attachment.get("path") or ""))
        if not path.is_file():
            raise FileNotFoundError(path.name)
        filename = attachment.get("filename") or path.name
        caption_fits = len(text) <= MAX_CAPTION
        await self._pacer.wait_turn(paced)
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
            await self._pacer.wait_turn(paced)
            message = await self.bot.send_message(
                chat_id, chunk, reply_markup=markup if i == len(chunks) - 1 else None)
        return message


def _short(kind: str, exc: TelegramError) -> str:
    """An error note for the outbox row: Telegram's description, which names no person."""
    return f"{kind}: {exc.message}"[:200]
