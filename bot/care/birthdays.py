"""Birthdays on the solar or the lunar calendar, and the anniversaries that make hard days.

A lunar birthday in a leap month is kept in that leap month only in lunar years that have it,
otherwise in the ordinary month of the same number; day 30 falls on day 29 when the month is
short. A solar 29 February falls on 28 February in common years. Parsing of the county's
written forms (`04-15`, `L04-15`, `闰四月十五`) lives here too, so import and dialogs agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from borax.calendars.lunardate import LCalendars, LunarDate

SOLAR = "solar"
LUNAR = "lunar"
CALENDAR_WORDS = {"公历": SOLAR, "阳历": SOLAR, "新历": SOLAR, "solar": SOLAR,
                  "农历": LUNAR, "阴历": LUNAR, "旧历": LUNAR, "lunar": LUNAR}

_CN_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
              "十": 10, "正": 1, "冬": 11, "腊": 12}


@dataclass(frozen=True)
class LunarBirthday:
    month: int
    day: int
    leap: bool = False


@dataclass(frozen=True)
class Birthday:
    """Which calendar a person keeps their birthday on, with what it needs."""

    calendar: str  # solar | lunar
    solar: date | None = None  # the birth date (solar calendar)
    lunar: LunarBirthday | None = None

    @classmethod
    def of(cls, calendar: str | None, birth_date: date | None, lunar_month: int | None,
           lunar_day: int | None, lunar_leap: bool | None) -> Birthday | None:
        """From a member's columns; a lunar birthday without lunar fields is derived from the birth date."""
        if calendar == LUNAR:
            if lunar_month and lunar_day:
                return cls(LUNAR, birth_date, LunarBirthday(lunar_month, lunar_day, bool(lunar_leap)))
            if birth_date is not None:
                ld = LunarDate.from_solar(birth_date)
                return cls(LUNAR, birth_date, LunarBirthday(ld.month, ld.day, bool(ld.leap)))
            return None
        return cls(SOLAR, birth_date) if birth_date is not None else None


def solar_anniversary(born: date, year: int) -> date:
    """The date of a solar anniversary in `year`; 29 February falls on the 28th in common years."""
    try:
        return born.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


@lru_cache(maxsize=65536)
def lunar_birthday_in(lunar: LunarBirthday, lunar_year: int) -> date:
    """The solar date of a lunar birthday in one lunar year (leap month and day 30 rules)."""
    leap = lunar.leap and LCalendars.leap_month(lunar_year) == lunar.month
    days = LCalendars.ndays(lunar_year, lunar.month, int(leap))
    return LunarDate(lunar_year, lunar.month, min(lunar.day, days), int(leap)).to_solar_date()


def birthdays_between(birthday: Birthday, start: date, end: date) -> list[date]:
    """Every celebration of `birthday` with start <= day <= end."""
    out: list[date] = []
    for year in range(start.year - 1, end.year + 1):
        if birthday.calendar == LUNAR and birthday.lunar is not None:
            if not 1900 <= year <= 2100:
                continue
            day = lunar_birthday_in(birthday.lunar, year)
        elif birthday.solar is not None:
            if year < 1:
                continue
            day = solar_anniversary(birthday.solar, year)
        else:
            continue
        if start <= day <= end and (birthday.solar is None or day > birthday.solar):
            out.append(day)
    return sorted(set(out))


def next_birthday(birthday: Birthday, on_or_after: date) -> date | None:
    found = birthdays_between(birthday, on_or_after, date(on_or_after.year + 1, 12, 31))
    return found[0] if found else None


def anniversaries_between(when: date, start: date, end: date) -> list[date]:
    """Solar anniversaries of a past date (a child's birth or death) inside [start, end]."""
    return [d for year in range(start.year, end.year + 1)
            if start <= (d := solar_anniversary(when, year)) <= end and d > when]


def _cn_number(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    text = text.replace("初", "").replace("廿", "二十").replace("卅", "三十")
    if not text or any(ch not in _CN_DIGITS for ch in text):
        return None
    if text == "十":
        return 10
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)
    if len(text) == 1:
        return _CN_DIGITS[text]
    return None


_NUMERIC = re.compile(r"^(?P<leap>[Ll闰])?\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?$")
_CHINESE = re.compile(r"^(?P<leap>闰)?(?P<m>[正冬腊一二三四五六七八九十]{1,2})月(?P<d>[初廿卅一二三四五六七八九十]{1,3}|\d{1,2})日?$")


def parse_lunar_birthday(text: str) -> LunarBirthday | None:
    """`04-15`, `L04-15`, `闰04-15`, `闰四月十五`, `农历腊月初八` → LunarBirthday; None if unreadable."""
    text = text.strip().replace("农历", "").replace("阴历", "").replace(" ", "")
    match = _NUMERIC.match(text) or _CHINESE.match(text)
    if not match:
        return None
    month, day = _cn_number(match["m"]), _cn_number(match["d"])
    if month is None or day is None or not (1 <= month <= 12 and 1 <= day <= 30):
        return None
    return LunarBirthday(month, day, bool(match["leap"]))


def format_lunar_birthday(lunar: LunarBirthday) -> str:
    return f"{'L' if lunar.leap else ''}{lunar.month:02d}-{lunar.day:02d}"
