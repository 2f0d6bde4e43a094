"""Pruning what is kept only for a while: handled platform message ids, pressed or expired
button tokens, wrong invite codes. A scheduler job (bot/care/scheduler.py), ages in
`[retention]` (bot/defaults/retention.toml).

Why these ages are safe: a platform retries a message within its own window (Telegram up to
24 hours, WeChat and WeCom seconds), so a handled id older than a day can never come back as a
retry — the setting refuses less. A token is pruned only once it can no longer act (pressed, or
past its expiry): the runner answers a pruned token exactly as a used one. Invite failures are
counted over `[dialogs] invite_failure_window_minutes`; they are kept at least that long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_

from bot.config import ConfigError, Settings
from storage.models import ActionToken, InviteFailure, ProcessedInbound

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.retention")

PLATFORM_RETRY_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class Retention:
    processed_inbound: timedelta
    used_buttons: timedelta
    invite_failures: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        section = settings.section("retention")

        def days(key: str) -> timedelta:
            value = section.get(key)
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"retention.{key} must be a number of days, not {value!r}") from exc
            if number < 0:
                raise ConfigError(f"retention.{key} cannot be negative")
            return timedelta(days=number)

        processed = days("processed_inbound_days")
        if processed < PLATFORM_RETRY_WINDOW:
            raise ConfigError("retention.processed_inbound_days must be at least 1: platforms retry "
                              "a message for up to a day, and a retry must still be recognised")
        window = timedelta(minutes=float(settings.section("dialogs").get("invite_failure_window_minutes", 60)))
        return cls(processed, days("used_buttons_days"), max(days("invite_failures_days"), window))


async def prune(session: Any, now: datetime, keep: Retention) -> dict[str, int]:
    """Delete what is older than its age; one statement per table. Returns rows deleted."""
    token_cutoff = now - keep.used_buttons
    counts = {}
    for name, statement in (
        ("processed_inbound", delete(ProcessedInbound).where(
            ProcessedInbound.processed_at < now - keep.processed_inbound)),
        ("used_buttons", delete(ActionToken).where(or_(
            ActionToken.used_at < token_cutoff, ActionToken.expires_at < token_cutoff))),
        ("invite_failures", delete(InviteFailure).where(InviteFailure.at < now - keep.invite_failures)),
    ):
        result = await session.execute(statement)
        counts[name] = int(result.rowcount or 0)
    return counts


async def retention_job(app: App, at: datetime) -> dict[str, int]:
    """The scheduler's entry point: one short transaction."""
    keep = Retention.from_settings(app.settings)
    async with app.db.async_session() as session:
        counts = await prune(session, at, keep)
    if any(counts.values()):
        log.info("pruned processed_inbound=%d used_buttons=%d invite_failures=%d",
                 counts["processed_inbound"], counts["used_buttons"], counts["invite_failures"])
    return counts
