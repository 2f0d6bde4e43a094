"""Dates and times as coordinators write them when planning ahead."""

from datetime import date, time

import pytest

from dialogs.parsing import parse_future_date, parse_time, parse_when

TODAY = date(2026, 11, 20)  # a Friday


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("11月25日 下午2点", (date(2026, 11, 25), time(14, 0))),
        ("明天14:30", (date(2026, 11, 21), time(14, 30))),
        ("下周三 9点半", (date(2026, 11, 25), time(9, 30))),
        ("11-25 14:30", (date(2026, 11, 25), time(14, 30))),
        ("１１月２５日　１４：３０", (date(2026, 11, 25), time(14, 30))),
        ("十一月二十五日 下午两点半", (date(2026, 11, 25), time(14, 30))),
        ("周三 上午十点", (date(2026, 11, 25), time(10, 0))),
        ("后天 晚上7点", (date(2026, 11, 22), time(19, 0))),
        ("11月25日14点30分", (date(2026, 11, 25), time(14, 30))),
        ("1月3日 2:30pm", (date(2027, 1, 3), time(14, 30))),  # long past this year: next year's
        ("2026-12-01 9:00", (date(2026, 12, 1), time(9, 0))),
        ("下午3点", (TODAY, time(15, 0))),  # a time alone is today
        ("11-25", (date(2026, 11, 25), None)),  # a day without a time: ask for the time
        ("12-01", (date(2026, 12, 1), None)),
        ("11月19日 下午2点", (date(2026, 11, 19), time(14, 0))),  # just past: said so, not next year
        ("找个时间", (None, None)),
    ],
)
def test_when(typed: str, expected: tuple[date | None, time | None]) -> None:
    assert parse_when(typed, TODAY) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("14:30", time(14, 30)), ("9点", time(9, 0)), ("9点半", time(9, 30)), ("下午2点", time(14, 0)),
     ("中午12点", time(12, 0)), ("晚上八点一刻", None), ("25:00", None), ("15", None), ("3pm", time(15, 0))],
)
def test_time(typed: str, expected: time | None) -> None:
    assert parse_time(typed) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("今天", TODAY), ("大后天", date(2026, 11, 23)), ("周五", TODAY), ("星期日", date(2026, 11, 22)),
     ("下周一", date(2026, 11, 23)), ("下下周一", date(2026, 11, 30)), ("2月30日", None),
     ("20261224", date(2026, 12, 24))],
)
def test_coming_days(typed: str, expected: date | None) -> None:
    assert parse_future_date(typed, TODAY) == expected
