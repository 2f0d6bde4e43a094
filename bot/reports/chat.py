"""`/report` in chat: a short summary and one chart for the sender's scope.

A coordinator sees their township (groups by volunteer), an admin the county (groups by
township). The chart is written as a PNG under the reports folder (beside the SQLite file, or
`[reports] chart_dir`) and sent as a photo attachment through the outbox like any reply.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.reports.charts import ChartFont, default_font, rate_groups, rates_chart
from bot.reports.config import ReportConfig
from bot.reports.model import Report
from bot.reports.periods import Period, month_of, parse_period, previous_month, quarter_of, year_of
from bot.reports.service import make_report
from dialogs.engine import catalog
from dialogs.engine.types import Attachment
from storage.models import Person, Role

KEEP_CHARTS_SECONDS = 7 * 24 * 3600  # the outbox may retry a photo for a while
MIN_DAYS_FOR_THIS_MONTH = 7


def chat_period(choice: str | None, today: date) -> Period:
    """This month (last month during its first week), or the named or typed period."""
    if choice in (None, "", "month"):
        if today.day < MIN_DAYS_FOR_THIS_MONTH:
            return previous_month(today)
        return month_of(today)
    if choice == "last_month":
        return previous_month(today)
    if choice == "quarter":
        return quarter_of(today)
    if choice == "year":
        return year_of(today)
    return parse_period(choice)


def chart_folder(settings: Settings, config: ReportConfig) -> Path:
    if config.chart_dir:
        return Path(config.chart_dir)
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).resolve().parent / "reports"
    return Path(tempfile.gettempdir()) / "warmline-reports"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else str(round(value))
    return str(value)


def summary_text(report: Report, locale: str, font: ChartFont, danger_hours: float = 24) -> str:
    def t(key: str, **values: Any) -> str:
        return catalog.t(f"report.{key}", locale, **values)

    def total(table: str) -> dict[str, Any]:
        return report.table(table).rows[0]

    ov, gr, ho, he = total("overview"), total("greetings"), total("holidays"), total("health")
    bd, da, ac, op, mo = (total("birthdays"), total("danger"), total("activities"), total("optin"),
                          total("money"))
    lines = [
        t("s_title", scope=report.scope_label, period=report.period_label, as_of=report.as_of.isoformat()),
        t("s_served", served=ov["served"], households=ov["households"]),
        t("s_greetings", pct=_fmt(gr["greeted_pct"]), greeted=gr["greeted"], expected=gr["expected"]),
        t("s_holidays", per=_fmt(ho["per_household"], 2), target=_fmt(ho["target"], 2),
          pct=_fmt(ho["met_pct"])),
        t("s_health", per=_fmt(he["per_household_month"], 2), target=he["target"], pct=_fmt(he["met_pct"])),
        t("s_birthdays", done=bd["done"], due=bd["due"]),
        t("s_danger", n=da["readings"], fast=da["fast"], not_followed=da["not_followed"],
          hours=f"{danger_hours:g}"),
        t("s_activities", held=ac["held"], attended=ac["attended"]),
        t("s_optin", opted=op["opted"], members=op["members"]),
        t("s_money", spent=f"{float(mo['spent'] or 0):,.2f}", entitled=f"{float(mo['entitled'] or 0):,.2f}"),
    ]
    level, _names = rate_groups(report)
    rows = [r for r in report.table("greetings").rows if r["level"] == level and r["greeted_pct"] is not None]
    if len(rows) > 1:
        low = min(rows, key=lambda r: float(r["greeted_pct"]))
        lines.append(t("s_lowest", name=low["name"], pct=_fmt(low["greeted_pct"])))
    lines += [t("s_note", text=w) for w in report.warnings]
    if font.warning:
        lines.append(t("s_font"))
    lines.append(t("s_full", code=report.period_code))
    return "\n".join(lines)


class ReportsInChat:
    """The `reports` service of dialogs: builds the report in the step's own unit of work."""

    def __init__(self, settings: Settings, font: ChartFont | None = None) -> None:
        self.settings = settings
        self.config = ReportConfig.from_settings(settings)
        self._font = font

    @property
    def font(self) -> ChartFont:
        return self._font or default_font()

    async def for_person(self, session: AsyncSession, person: Person, at: datetime,
                         period: str | None = None) -> tuple[str, Attachment | None]:
        locale = person.locale or catalog.DEFAULT_LOCALE
        if person.role == Role.ADMIN:
            township: int | None = None
        elif person.role == Role.COORDINATOR and person.township_id is not None:
            township = person.township_id
        else:
            return catalog.t("report.not_allowed", locale), None
        today = at.astimezone(self.settings.timezone).date()
        chosen = chat_period(period, today)  # ValueError for an unreadable period
        report = await session.run_sync(lambda s: make_report(
            s, self.settings, period=chosen, now=at, township=township, config=self.config,
            planner=False))
        font = self.font
        png = rates_chart(report, font)
        folder = chart_folder(self.settings, self.config)
        folder.mkdir(parents=True, exist_ok=True)
        self._prune(folder)
        name = f"report-{township or 'county'}-{chosen.code.replace('..', '_')}-{secrets.token_hex(4)}.png"
        path = folder / name
        path.write_bytes(png)
        text = summary_text(report, locale, font, self.config.danger_followup_hours)
        return text, Attachment(kind="photo", path=str(path), filename=name)

    @staticmethod
    def _prune(folder: Path) -> None:
        cutoff = time.time() - KEEP_CHARTS_SECONDS
        for old in folder.glob("report-*.png"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                continue

