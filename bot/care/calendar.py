"""The program's occasions on real dates, for any year 2000–2100 (lunar dates from borax).

Lunar occasions in lunar months 11–12 (腊八, 除夕) belong to a lunar year that straddles two
Gregorian years, so one Gregorian year can hold two of them or none: callers that plan ahead
use `next_occurrence`, never "the date in year N". 除夕 is the *last day* of the lunar year —
lunar 12/29 when the 12th month is short — which `LunarDate.last_day` gives directly.
"""

from __future__ import annotations

import calendar as _gregorian
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from borax.calendars.lunardate import LunarDate, TermUtils

from bot.care.occasions import NAMES, OCCASIONS

FIRST_YEAR = 2000
LAST_YEAR = 2100


@dataclass(frozen=True, order=True)
class Occurrence:
    day: date
    key: str
    name: str


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> date:
    """The nth (1-based) given weekday (Monday=0) of a month: 母亲节, 父亲节."""
    first = date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + timedelta(days=offset + 7 * (nth - 1))


def _lunar(month: int, day: int) -> Callable[[int], list[date]]:
    """A fixed lunar month/day in the ordinary (non-leap) month of lunar year `y`."""
    return lambda y: [LunarDate(y, month, day).to_solar_date()]


def _lunar_straddling(make: Callable[[int], LunarDate]) -> Callable[[int], list[date]]:
    """Occasions late in the lunar year: the previous and this lunar year may both land in `y`."""
    def dates(y: int) -> list[date]:
        out = []
        for lunar_year in (y - 1, y):
            try:
                day = make(lunar_year).to_solar_date()
            except ValueError:  # outside borax's range (before 1900 / after 2100)
                continue
            if day.year == y:
                out.append(day)
        return out
    return dates


_RULES: dict[str, Callable[[int], list[date]]] = {
    "new_year": lambda y: [date(y, 1, 1)],
    "new_years_eve": _lunar_straddling(lambda ly: LunarDate.last_day(ly)),
    "spring_festival": _lunar(1, 1),
    "lantern": _lunar(1, 15),
    "qingming": lambda y: [TermUtils.nth_term_day(y, term_name="清明")],
    "members_day": lambda y: [date(y, 5, 29)],
    "mothers_day": lambda y: [_nth_weekday(y, 5, _gregorian.SUNDAY, 2)],
    "fathers_day": lambda y: [_nth_weekday(y, 6, _gregorian.SUNDAY, 3)],
    "dragon_boat": _lunar(5, 5),
    "qixi": _lunar(7, 7),
    "mid_autumn": _lunar(8, 15),
    "national_day": lambda y: [date(y, 10, 1)],
    "double_ninth": _lunar(9, 9),
    "laba": _lunar_straddling(lambda ly: LunarDate(ly, 12, 8)),
}
assert set(_RULES) == set(NAMES), "every occasion key needs a date rule"


def _check_year(year: int) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"the occasion calendar covers {FIRST_YEAR}–{LAST_YEAR}, not {year}")


@lru_cache(maxsize=4096)
def _dates(key: str, year: int) -> tuple[date, ...]:
    """Memoised: the planner asks for the same few years for every household."""
    return tuple(_RULES[key](year))


def dates_of(key: str, year: int) -> list[date]:
    """Every date of one occasion inside Gregorian `year` (0, 1 or 2 of them)."""
    _check_year(year)
    if key not in _RULES:
        raise KeyError(f"unknown occasion: {key}")
    return list(_dates(key, year))


def occasions_in(year: int) -> list[Occurrence]:
    """Every occasion falling in Gregorian `year`, in date order."""
    _check_year(year)
    return sorted(Occurrence(day, key, name) for key, name in OCCASIONS for day in _dates(key, year))


def next_occurrence(key: str, after_date: date) -> date | None:
    """The first date of `key` on or after `after_date` (None past the end of the calendar)."""
    for year in range(max(after_date.year, FIRST_YEAR), min(after_date.year + 1, LAST_YEAR) + 1):
        for day in sorted(dates_of(key, year)):
            if day >= after_date:
                return day
    return None


def occurrences_between(keys: tuple[str, ...] | list[str], start: date, end: date) -> list[Occurrence]:
    """Occurrences of the given occasions with start <= day <= end (both inclusive)."""
    out = []
    for year in range(max(start.year, FIRST_YEAR), min(end.year, LAST_YEAR) + 1):
        for key in keys:
            out.extend(Occurrence(d, key, NAMES[key]) for d in _dates(key, year) if start <= d <= end)
    return sorted(out)


class CalendarOccasions:
    """The dialogs' OccasionProvider: the occasions nearest a visit's day come first."""

    def choices_near(self, day: date) -> list[tuple[str, str]]:
        """Every occasion, ordered by how close its nearest date (before or after) is to `day`."""
        return list(_choices_near(day))


@lru_cache(maxsize=16)
def _choices_near(day: date) -> tuple[tuple[str, str], ...]:
    """(Kept per day: every visit report asks it, twice, and the answer is two years of lunar
    and solar dates worked out again — about 2 % of a step's time; it changes once a day.)"""
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        return tuple(OCCASIONS)
    year = timedelta(days=366)
    distance = {key: date.max.toordinal() for key, _ in OCCASIONS}
    for occ in occurrences_between(list(distance), day - year, day + year):
        distance[occ.key] = min(distance[occ.key], abs((occ.day - day).days))
    order = {key: i for i, (key, _) in enumerate(OCCASIONS)}
    keys = sorted(distance, key=lambda k: (distance[k], order[k]))
    return tuple((k, NAMES[k]) for k in keys)
