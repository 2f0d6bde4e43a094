"""The scheduler's activity jobs: scheduled invitation sends and the reminders before an activity.

Both are idempotent and keep their state in the database (the activity's status and send_at, the
outbox's idempotency keys), so a job that runs twice, or again after a restart, sends nothing
twice, and a send scheduled before a restart still goes out after it. The rules themselves live
in `domain.invitations`, shared with the chat dialogs.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import quiet_hours
from bot.care.hard_days import CareHardDays
from bot.config import ConfigError, Settings
from domain.invitations import SendWindow, remind_due, send_due

if TYPE_CHECKING:
    from bot.app import App


def send_window(settings: Settings) -> SendWindow:
    start, end = quiet_hours(settings)
    return SendWindow(settings.timezone, start, end, CareHardDays())


def reminder_settings(settings: Settings) -> tuple[int, time]:
    """[activities] reminder_days_before and reminder_time, checked."""
    section = settings.section("activities")
    try:
        days = int(section.get("reminder_days_before", 1))
        at = time.fromisoformat(str(section.get("reminder_time", "09:00")))
    except ValueError as exc:
        raise ConfigError(f"activities.reminder_*: {exc}") from exc
    if days < 0:
        raise ConfigError("activities.reminder_days_before must not be negative")
    return days, at


async def send_due_activities(session: AsyncSession, now: datetime, settings: Settings) -> int:
    """Send the invitations of every scheduled activity whose send time has come."""
    return await send_due(session, now, send_window(settings))


async def remind_activities(session: AsyncSession, now: datetime, settings: Settings) -> int:
    """Remind everyone with a place in an activity whose reminder time has come."""
    days, at = reminder_settings(settings)
    return await remind_due(session, now, send_window(settings), days_before=days, at=at)


# --- scheduler entry points: `(app, at)` jobs for bot/care/scheduler.py, one transaction each


async def scheduled_sends_job(app: App, at: datetime) -> dict[str, int]:
    async with app.db.async_session() as session:
        return {"invited": await send_due_activities(session, at, app.settings)}


async def reminders_job(app: App, at: datetime) -> dict[str, int]:
    async with app.db.async_session() as session:
        return {"reminded": await remind_activities(session, at, app.settings)}
