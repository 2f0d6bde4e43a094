"""What an input means before any dialog sees it: control words, chosen options, pressed buttons.

Kept apart from the runner so each rule of reading input lives once: the words that cancel,
help or go to the menu anywhere; a typed number or label picking one of the current question's
options; a number answering the newest pushed message (a digest, an invitation) on channels
without buttons; and a pressed button's opaque token, which acts once.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine.sessions import SessionRow
from dialogs.engine.types import Inbound
from dialogs.parsing import normalize
from storage.models import ActionToken, OutboxMessage, OutboxStatus

CANCEL_WORDS = frozenset({"取消", "/cancel", "cancel", "退出", "算了"})
HELP_WORDS = frozenset({"帮助", "/help", "help", "?", "？", "怎么用"})
MENU_WORDS = frozenset({"菜单", "/menu", "menu", "/start", "主菜单", "开始"})
# What a token we issue looks like (domain.messages.new_token); anything else is forged and is
# not looked up at all (PostgreSQL refuses a NUL byte in a query parameter).
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def control_word(word: str) -> str | None:
    """"cancel", "help" or "menu" for those words (lower-cased, normalized), else None."""
    if word in CANCEL_WORDS:
        return "cancel"
    if word in HELP_WORDS:
        return "help"
    if word in MENU_WORDS:
        return "menu"
    return None


def match_option(row: SessionRow, text: str) -> str | None:
    """The value of the current question's option the text names: its number, its label, or
    the unique label it begins (two characters at least)."""
    options = (row.data or {}).get("_opts") or []
    if not options or not text:
        return None
    if text.isdigit():
        index = int(text) - 1
        return options[index][1] if 0 <= index < len(options) else None
    lowered = text.lower()
    labels: list[tuple[str, str]] = [(normalize(label).lower(), value) for _token, value, label in options]
    for label, value in labels:
        if lowered == label:
            return value
    starts = [value for label, value in labels if len(lowered) >= 2 and label.startswith(lowered)]
    return starts[0] if len(starts) == 1 else None


def use_token(token_row: ActionToken, now: datetime) -> str | None:
    """A pushed button acts once: a second press (or its number typed again) is stale."""
    if token_row.used_at is not None or (
            token_row.expires_at is not None and token_row.expires_at <= now):
        return None
    token_row.used_at = now
    return str(token_row.action.get("value"))


async def match_pushed(session: AsyncSession, row: SessionRow, inbound: Inbound, text: str,
                       now: datetime) -> str | None:
    """A number typed in answer to the latest pushed message (a digest, an invitation).

    Channels without buttons show those options numbered too; the number refers to the
    newest such message delivered since the person's last step.
    """
    if not text.isdigit():
        return None
    query = (select(OutboxMessage).where(
        OutboxMessage.channel == inbound.channel, OutboxMessage.address == inbound.address,
        OutboxMessage.kind != "reply", OutboxMessage.status == OutboxStatus.SENT)
        .order_by(OutboxMessage.sent_at.desc(), OutboxMessage.id.desc()).limit(1))
    if row.updated_at is not None and row.version:
        query = query.where(OutboxMessage.sent_at >= row.updated_at)
    pushed = await session.scalar(query)
    options = ((pushed.payload or {}).get("options") or []) if pushed is not None else []
    index = int(text) - 1
    if not 0 <= index < len(options):
        return None
    token_row = await session.get(ActionToken, options[index].get("token", ""))
    if token_row is None or token_row.address != inbound.address:
        return None
    return use_token(token_row, now)


async def resolve_token(session: AsyncSession, row: SessionRow, inbound: Inbound,
                        now: datetime) -> str | None:
    """What a pressed button means: one of the current question's options, or a pushed
    message's action bound to this very chat; None for anything stale, foreign or forged."""
    if not inbound.option_token or not TOKEN_SHAPE.fullmatch(inbound.option_token):
        return None
    for token, value, _label in (row.data or {}).get("_opts") or []:
        if token == inbound.option_token:
            return str(value)
    token_row = await session.get(ActionToken, inbound.option_token)
    if (token_row is None or token_row.channel != inbound.channel
            or token_row.address != inbound.address):
        return None
    return use_token(token_row, now)
