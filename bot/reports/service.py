"""One entry point the CLI and chat share: settings + scope + period in, a Report out."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.orm import Session

from bot.config import Settings
from bot.reports.build import build_report, resolve_scope
from bot.reports.config import ReportConfig
from bot.reports.model import Report
from bot.reports.periods import Period


def make_report(session: Session, settings: Settings, *, period: Period, now: datetime,
                township: str | int | None = None, as_of: date | None = None,
                config: ReportConfig | None = None, planner: bool = True) -> Report:
    """The report for `period` as known at `now` (targets judged up to `as_of`, default today)."""
    tz = settings.timezone
    local_now = now.astimezone(tz)
    return build_report(
        session, period=period, as_of=as_of or local_now.date(), scope=resolve_scope(session, township),
        tz=tz, config=config or ReportConfig.from_settings(settings), generated_at=local_now,
        planner=planner)
