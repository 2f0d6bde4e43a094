"""Assemble a period report for the county or one township from the recorded data."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.reports.config import ReportConfig
from bot.reports.figures import SECTIONS
from bot.reports.frame import Frame, Scope
from bot.reports.model import Report
from bot.reports.money import budget, holiday_money
from bot.reports.periods import Period
from storage.models import County, Township


class UnknownTownship(LookupError):
    """No township has this name."""


def resolve_scope(session: Session, township: str | int | None = None) -> Scope:
    """The county (there is one per database), or one of its townships by name or id."""
    county = session.scalar(select(County.name).order_by(County.id).limit(1)) or "全县"
    if township is None or township == "":
        return Scope(county)
    query = select(Township.id, Township.name)
    query = query.where(Township.id == township) if isinstance(township, int) else query.where(
        Township.name == str(township).strip())
    row = session.execute(query).first()
    if row is None:
        raise UnknownTownship(str(township))
    return Scope(county, row[0], row[1])


def build_report(session: Session, *, period: Period, as_of: date, scope: Scope, tz: ZoneInfo,
                 config: ReportConfig, generated_at: datetime, planner: bool = True) -> Report:
    frame = Frame(session=session, period=period, as_of=as_of, scope=scope, tz=tz, config=config,
                  with_planner=planner)
    sections = [make(frame) for make in SECTIONS]
    money = holiday_money(frame)
    sections.append(money)
    spent = money.table("money").rows[0]["spent"]
    sections.append(budget(frame, round(float(spent or 0) * 100)))
    frame.close()  # on an error the transaction's rollback takes the temporary table with it
    warnings = list(frame.notes)
    if period.elapsed_end(as_of) is None:
        warnings.append(f"本期（{period.label}）还没有开始，各项数字为零。")
    elif as_of < period.end:
        warnings.append(f"本期尚未结束：服务目标按截至 {as_of.isoformat()} 已过的时间折算。")
    return Report(
        title=f"{scope.label} 失独家庭关爱服务报表",
        scope_label=scope.label, period_label=period.label, period_code=period.code,
        start=period.start, end=period.end, as_of=as_of, generated_at=generated_at,
        sections=sections, warnings=warnings)
