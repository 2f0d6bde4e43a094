"""The program's occasions: stable keys (used in records and idempotency keys) and Chinese names."""

from __future__ import annotations

OCCASIONS: tuple[tuple[str, str], ...] = (
    ("new_year", "元旦"),
    ("new_years_eve", "除夕"),
    ("spring_festival", "春节"),
    ("lantern", "元宵"),
    ("qingming", "清明"),
    ("members_day", "5·29 会员日"),
    ("mothers_day", "母亲节"),
    ("fathers_day", "父亲节"),
    ("dragon_boat", "端午"),
    ("qixi", "七夕"),
    ("mid_autumn", "中秋"),
    ("national_day", "国庆"),
    ("double_ninth", "重阳"),
    ("laba", "腊八"),
)

NAMES = dict(OCCASIONS)
