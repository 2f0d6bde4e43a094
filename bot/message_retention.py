"""How long delivered message bodies are kept (`[delivery] keep_bodies_days`), and the
scheduler job that purges older ones (see storage/outbox/recording.py, "bodies", for why)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.config import ConfigError, Settings
from storage.outbox import apurge_delivered_bodies

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.retention")

DEFAULT_KEEP_DAYS = 7.0


def keep_bodies(settings: Settings) -> timedelta:
    value = settings.section("delivery").get("keep_bodies_days", DEFAULT_KEEP_DAYS)
    try:
        days = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[delivery] keep_bodies_days must be a number of days, not {value!r}") from exc
    if days < 0:
        raise ConfigError("[delivery] keep_bodies_days cannot be negative")
    return timedelta(days=days)


async def purge_bodies_job(app: App, at: datetime) -> int:
    """A scheduler job: blank the bodies of messages finished longer ago than the setting."""
    async with app.db.async_session() as session:
        purged = await apurge_delivered_bodies(session, at, keep_bodies(app.settings))
    if purged:
        log.info("purged delivered message bodies count=%d", purged)
    return purged
