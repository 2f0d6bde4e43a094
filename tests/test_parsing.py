"""Dates, money and Chinese numerals as volunteers write them."""

from datetime import date

import pytest

from dialogs.parsing import chinese_number, normalize, parse_date, parse_money

TODAY = date(2026, 11, 20)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("今天", TODAY),
        ("昨天", date(2026, 11, 19)),
        ("前天", date(2026, 11, 18)),
        ("11-18", date(2026, 11, 18)),
        ("１１／１８", date(2026, 11, 18)),
        ("11月18日", date(2026, 11, 18)),
        ("11.18", date(2026, 11, 18)),
        ("2026-11-01", date(2026, 11, 1)),
        ("2026年3月5日", date(2026, 3, 5)),
        ("20261101", date(2026, 11, 1)),
        ("12-25", date(2025, 12, 25)),  # no year and not yet come this year: last year's
    ],
)
def test_dates(typed: str, expected: date) -> None:
    assert parse_date(typed, TODAY) == expected


@pytest.mark.parametrize("typed", ["明年", "13-40", "2026-02-30", "abc", ""])
def test_bad_dates(typed: str) -> None:
    assert parse_date(typed, TODAY) is None


def test_a_date_with_a_year_in_the_future_is_kept_for_the_dialog_to_refuse() -> None:
    assert parse_date("2027-01-01", TODAY) == date(2027, 1, 1)


@pytest.mark.parametrize(
    ("typed", "fen", "gift"),
    [
        ("200", 20000, ""),
        ("２００元", 20000, ""),
        ("200 水果", 20000, "水果"),
        ("￥150.5，牛奶一箱", 15050, "牛奶一箱"),
        ("无", 0, ""),
        ("一盆绿植", 0, "一盆绿植"),
    ],
)
def test_money(typed: str, fen: int, gift: str) -> None:
    assert parse_money(typed) == (fen, gift)


@pytest.mark.parametrize("typed", ["99999999", "两百块", "很多钱"])
def test_unreadable_or_absurd_money_is_refused(typed: str) -> None:
    assert parse_money(typed) is None


@pytest.mark.parametrize(("text", "value"), [("十五", 15), ("二十", 20), ("廿三", 23), ("三十", 30), ("初八", 8), ("十", 10)])
def test_chinese_numbers(text: str, value: int) -> None:
    assert chinese_number(text) == value


def test_normalize_folds_full_width_and_strips_controls() -> None:
    assert normalize("\u0007 １２３ \u200b ") == "123"
