"""Report periods: a month, a quarter, a year or a date range, and how much of it has elapsed.

Targets are judged on the elapsed part of a period (up to the report's "as of" day), so a
report run in the middle of a quarter does not count weeks that have not happened yet.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta


class PeriodError(ValueError):
    """The period text cannot be read; the message shows the accepted forms."""


FORMS = "2026-11（月）、2026-Q3（季度）、2026（年）、2026-01-01..2026-03-31（日期范围）"

_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\s*(?:\.\.|~|至)\s*(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Period:
    """Calendar days start..end, both inclusive, with a code and a Chinese label."""

    start: date
    end: date
    code: str
    label: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def elapsed_end(self, as_of: date) -> date | None:
        """The last day of the period that has already begun by `as_of` (None: not started)."""
        if as_of < self.start:
            return None
        return min(self.end, as_of)

    def months(self, as_of: date | None = None) -> float:
        """Calendar months covered (elapsed part only if `as_of`): a part month counts by its days."""
        end = self.end if as_of is None else self.elapsed_end(as_of)
        if end is None:
            return 0.0
        return months_between(self.start, end)

    def complete_weeks(self, as_of: date) -> list[date]:
        """Mondays of the ISO weeks of this period that have ended by `as_of`.

        A week belongs to the period that holds its Thursday (the ISO rule), so consecutive
        months or quarters share no week and lose none.
        """
        monday = self.start - timedelta(days=self.start.weekday())
        if monday + timedelta(days=3) < self.start:
            monday += timedelta(days=7)
        out = []
        while monday + timedelta(days=3) <= self.end and monday + timedelta(days=6) <= as_of:
            out.append(monday)
            monday += timedelta(days=7)
        return out

    def complete_months(self, as_of: date) -> list[tuple[int, int]]:
        """(year, month) of calendar months inside the period that have ended by `as_of`."""
        out = []
        year, month = self.start.year, self.start.month
        while date(year, month, 1) <= self.end:
            first = date(year, month, 1)
            last = date(year, month, calendar.monthrange(year, month)[1])
            if first >= self.start and last <= self.end and last <= as_of:
                out.append((year, month))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out


def months_between(start: date, end: date) -> float:
    """Months from start to end inclusive, each month weighted by the share of its days covered."""
    total = 0.0
    year, month = start.year, start.month
    while date(year, month, 1) <= end:
        ndays = calendar.monthrange(year, month)[1]
        first, last = date(year, month, 1), date(year, month, ndays)
        lo, hi = max(first, start), min(last, end)
        if lo <= hi:
            total += ((hi - lo).days + 1) / ndays
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return total


def parse_period(text: str) -> Period:
    """`2026-11`, `2026-Q3`, `2026` or `2026-01-01..2026-03-31` as a Period."""
    raw = (text or "").strip()
    try:
        if m := _MONTH.match(raw):
            year, month = int(m[1]), int(m[2])
            last = calendar.monthrange(year, month)[1]
            return Period(date(year, month, 1), date(year, month, last), f"{year}-{month:02d}",
                          f"{year}年{month}月")
        if m := _QUARTER.match(raw):
            year, q = int(m[1]), int(m[2])
            first = date(year, 3 * q - 2, 1)
            last_month = 3 * q
            last = date(year, last_month, calendar.monthrange(year, last_month)[1])
            return Period(first, last, f"{year}-Q{q}", f"{year}年第{q}季度")
        if m := _YEAR.match(raw):
            year = int(m[1])
            return Period(date(year, 1, 1), date(year, 12, 31), str(year), f"{year}年")
        if m := _RANGE.match(raw):
            start, end = date.fromisoformat(m[1]), date.fromisoformat(m[2])
            if end < start:
                raise PeriodError(f"结束日期早于开始日期：{raw}（可用格式：{FORMS}）")
            return Period(start, end, f"{start.isoformat()}..{end.isoformat()}",
                          f"{start.isoformat()} 至 {end.isoformat()}")
    except ValueError as exc:
        if isinstance(exc, PeriodError):
            raise
        raise PeriodError(f"没有这个日期：{raw}（可用格式：{FORMS}）") from exc
    raise PeriodError(f"看不懂报表期间：{raw!r}（可用格式：{FORMS}）")


def month_of(day: date) -> Period:
    return parse_period(f"{day.year}-{day.month:02d}")


def quarter_of(day: date) -> Period:
    return parse_period(f"{day.year}-Q{(day.month - 1) // 3 + 1}")


def year_of(day: date) -> Period:
    return parse_period(str(day.year))


def previous_month(day: date) -> Period:
    first = day.replace(day=1) - timedelta(days=1)
    return month_of(first)
