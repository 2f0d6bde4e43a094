"""The occasion calendar and birthdays, pinned against published dates."""

from __future__ import annotations

import json
from datetime import date

import pytest
from borax.calendars.lunardate import LCalendars

from bot.care.birthdays import (
    LUNAR,
    SOLAR,
    Birthday,
    LunarBirthday,
    birthdays_between,
    lunar_birthday_in,
    next_birthday,
    parse_lunar_birthday,
)
from bot.care.calendar import CalendarOccasions, dates_of, next_occurrence, occasions_in
from bot.care.occasions import OCCASIONS
from bot.care.policy import Policy
from bot.cli import main
from bot.config import ConfigError

# Published dates (State Council holiday notices and the almanac), by year.
PUBLISHED = {
    2000: {"spring_festival": date(2000, 2, 5), "new_years_eve": date(2000, 2, 4),
           "mid_autumn": date(2000, 9, 12), "qingming": date(2000, 4, 4)},
    2023: {"new_years_eve": date(2023, 1, 21), "spring_festival": date(2023, 1, 22),
           "lantern": date(2023, 2, 5), "qingming": date(2023, 4, 5),
           "dragon_boat": date(2023, 6, 22), "qixi": date(2023, 8, 22),
           "mid_autumn": date(2023, 9, 29), "double_ninth": date(2023, 10, 23)},
    2024: {"laba": date(2024, 1, 18), "new_years_eve": date(2024, 2, 9),
           "spring_festival": date(2024, 2, 10), "lantern": date(2024, 2, 24),
           "qingming": date(2024, 4, 4), "dragon_boat": date(2024, 6, 10),
           "qixi": date(2024, 8, 10), "mid_autumn": date(2024, 9, 17),
           "double_ninth": date(2024, 10, 11)},
    2025: {"laba": date(2025, 1, 7), "new_years_eve": date(2025, 1, 28),
           "spring_festival": date(2025, 1, 29), "lantern": date(2025, 2, 12),
           "qingming": date(2025, 4, 4), "mothers_day": date(2025, 5, 11),
           "fathers_day": date(2025, 6, 15), "dragon_boat": date(2025, 5, 31),
           "qixi": date(2025, 8, 29), "mid_autumn": date(2025, 10, 6),
           "double_ninth": date(2025, 10, 29)},
    2026: {"new_year": date(2026, 1, 1), "laba": date(2026, 1, 26),
           "new_years_eve": date(2026, 2, 16), "spring_festival": date(2026, 2, 17),
           "lantern": date(2026, 3, 3), "qingming": date(2026, 4, 5),
           "mothers_day": date(2026, 5, 10), "members_day": date(2026, 5, 29),
           "dragon_boat": date(2026, 6, 19), "fathers_day": date(2026, 6, 21),
           "qixi": date(2026, 8, 19), "mid_autumn": date(2026, 9, 25),
           "national_day": date(2026, 10, 1), "double_ninth": date(2026, 10, 18)},
}


@pytest.mark.parametrize(("year", "key", "expected"),
                         [(y, k, d) for y, days in PUBLISHED.items() for k, d in days.items()])
def test_occasions_fall_on_their_published_dates(year: int, key: str, expected: date) -> None:
    assert expected in dates_of(key, year)
    assert any(o.key == key and o.day == expected for o in occasions_in(year))


@pytest.mark.parametrize(("year", "eve", "lunar_day"), [
    (2025, date(2025, 1, 28), 29),  # 2024's 12th lunar month is short: no 年三十
    (2026, date(2026, 2, 16), 29),
    (2024, date(2024, 2, 9), 30),
])
def test_new_years_eve_is_the_last_day_of_the_lunar_year(year: int, eve: date, lunar_day: int) -> None:
    assert dates_of("new_years_eve", year) == [eve]
    assert LCalendars.ndays(year - 1, 12) == lunar_day
    assert dates_of("spring_festival", year) == [date.fromordinal(eve.toordinal() + 1)]


def test_a_gregorian_year_can_have_two_laba_days_or_none() -> None:
    assert dates_of("laba", 2022) == [date(2022, 1, 10), date(2022, 12, 30)]
    assert dates_of("laba", 2023) == []
    # Planning goes by next occurrence, so 2023 still gets its Laba greeting, in January 2024.
    assert next_occurrence("laba", date(2023, 1, 1)) == date(2024, 1, 18)
    assert next_occurrence("laba", date(2022, 1, 11)) == date(2022, 12, 30)


def test_every_year_of_the_range_has_every_solar_occasion_once() -> None:
    for year in (2000, 2001, 2050, 2099, 2100):
        keys = [o.key for o in occasions_in(year)]
        for key in ("new_year", "spring_festival", "qingming", "mid_autumn", "national_day"):
            assert keys.count(key) == 1, (year, key)
    with pytest.raises(ValueError):
        occasions_in(1999)


def test_next_occurrence_is_on_or_after_the_day() -> None:
    assert next_occurrence("mid_autumn", date(2026, 9, 25)) == date(2026, 9, 25)
    assert next_occurrence("mid_autumn", date(2026, 9, 26)) == date(2027, 9, 15)
    assert next_occurrence("new_years_eve", date(2026, 11, 20)) == date(2027, 2, 5)


def test_choices_near_a_day_put_the_nearest_occasion_first() -> None:
    choices = CalendarOccasions().choices_near(date(2026, 10, 17))
    assert choices[0] == ("double_ninth", "重阳")
    assert ("national_day", "国庆") in choices[:3]
    assert {k for k, _ in choices} == {k for k, _ in OCCASIONS}


def test_calendar_command_prints_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calendar", "--year", "2026", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"key": "double_ninth", "name": "重阳", "date": "2026-10-18"} in rows
    assert len(rows) == len(OCCASIONS)
    assert main(["calendar", "--year", "2023"]) == 0
    out = capsys.readouterr().out
    assert "腊八" not in out and "2023-01-21" in out
    assert main(["calendar", "--year", "1999"]) == 2


# ------------------------------------------------------------------ birthdays


def test_lunar_birthday_in_a_leap_month_only_in_years_that_have_it() -> None:
    leap_six = LunarBirthday(6, 10, leap=True)  # born in 闰六月 (2025 has one, 2026 does not)
    assert LCalendars.leap_month(2025) == 6 and LCalendars.leap_month(2026) != 6
    assert lunar_birthday_in(leap_six, 2025) == date(2025, 8, 3)   # 闰六月初十
    assert lunar_birthday_in(LunarBirthday(6, 10), 2025) == date(2025, 7, 4)  # ordinary 六月初十
    assert lunar_birthday_in(leap_six, 2026) == date(2026, 7, 23)  # falls in the ordinary month


def test_day_thirty_falls_on_day_29_in_a_short_month() -> None:
    thirtieth = LunarBirthday(12, 30)
    assert LCalendars.ndays(2024, 12) == 29
    assert lunar_birthday_in(thirtieth, 2024) == date(2025, 1, 28)  # 腊月廿九, the eve
    assert lunar_birthday_in(thirtieth, 2023) == date(2024, 2, 9)   # 腊月三十
    # the leap 6th month of 2025 has 29 days
    assert lunar_birthday_in(LunarBirthday(6, 30, leap=True), 2025) == date(2025, 8, 22)


def test_solar_29_february_is_kept_on_28_february() -> None:
    leapling = Birthday(SOLAR, date(1952, 2, 29))
    assert birthdays_between(leapling, date(2026, 1, 1), date(2028, 12, 31)) == [
        date(2026, 2, 28), date(2027, 2, 28), date(2028, 2, 29)]


def test_lunar_birthday_from_columns_or_derived_from_the_birth_date() -> None:
    explicit = Birthday.of(LUNAR, date(1950, 1, 1), 4, 15, False)
    assert explicit is not None and explicit.lunar == LunarBirthday(4, 15)
    derived = Birthday.of(LUNAR, date(1952, 3, 14), None, None, None)
    assert derived is not None and derived.lunar == LunarBirthday(2, 19)  # 1952-03-14 is 二月十九
    nxt = next_birthday(derived, date(2026, 11, 20))
    assert nxt == lunar_birthday_in(LunarBirthday(2, 19), 2027) and nxt.month == 3
    assert Birthday.of(SOLAR, None, None, None, None) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("04-15", LunarBirthday(4, 15)),
    ("L04-15", LunarBirthday(4, 15, True)),
    ("闰四月十五", LunarBirthday(4, 15, True)),
    ("农历腊月初八", LunarBirthday(12, 8)),
    ("正月廿三", LunarBirthday(1, 23)),
    ("十一月三十", LunarBirthday(11, 30)),
    ("13-01", None), ("四月三十一", None), ("明天", None), ("", None),
])
def test_parse_lunar_birthday(text: str, expected: LunarBirthday | None) -> None:
    assert parse_lunar_birthday(text) == expected


# ------------------------------------------------------------------ policy


def test_policy_defaults_meet_the_program_minimums() -> None:
    policy = Policy.default()
    assert policy.greeting_every_days == 7 and policy.health_services_per_month == 2
    assert len(policy.holiday_occasions) >= policy.holiday_min_per_year == 8
    assert "members_day" in policy.holiday_occasions and "qingming" not in policy.holiday_occasions
    assert str(policy.digest_time) == "08:00:00" and policy.overdue_escalation_days == 3


def test_policy_refuses_bad_values_with_the_setting_name() -> None:
    assert Policy.from_mapping({"reassessment_months": 3}).reassessment_months == 3
    with pytest.raises(ConfigError, match="holiday_occasions"):
        Policy.from_mapping({"holiday_occasions": ["new_year", "laba"]})
    with pytest.raises(ConfigError, match="unknown occasion"):
        Policy.from_mapping({"holiday_occasions": ["xmas"] * 9})
    with pytest.raises(ConfigError, match="greeting_every_dayz"):
        Policy.from_mapping({"greeting_every_dayz": 7})
    with pytest.raises(ConfigError, match="digest_time"):
        Policy.from_mapping({"digest_time": "8 o'clock"})
