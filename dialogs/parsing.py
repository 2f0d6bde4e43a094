"""Forgiving input: what volunteers really type, turned into values or a clear 'no'.

Everything goes through NFKC first, so full-width digits and punctuation (１３５／８５) read
like their ASCII forms.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}


def normalize(text: str) -> str:
    """NFKC, control characters removed, whitespace folded."""
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return re.sub(r"\s+", " ", text).strip()


def clean_text(text: str) -> str:
    """Free text as the user wrote it (their own punctuation kept), minus control characters."""
    text = "".join(ch for ch in (text or "") if ch == "\n" or unicodedata.category(ch)[0] != "C")
    return text.strip()


def chinese_number(text: str) -> int | None:
    """Small Chinese numerals as written in dates and lunar days: 十五, 二十, 廿三, 三十, 初八."""
    text = text.removeprefix("初")
    if not text:
        return None
    if text.isdigit():
        return int(text)
    if text.startswith("廿"):
        rest = chinese_number(text[1:]) if len(text) > 1 else 0
        return None if rest is None else 20 + rest
    if "十" in text:
        tens_s, _, ones_s = text.partition("十")
        tens = _CN_DIGITS.get(tens_s) if tens_s else 1
        ones = _CN_DIGITS.get(ones_s) if ones_s else 0
        if tens is None or ones is None:
            return None
        return tens * 10 + ones
    if len(text) == 1 and text in _CN_DIGITS:
        return _CN_DIGITS[text]
    return None


_RELATIVE = {"今天": 0, "今日": 0, "today": 0, "昨天": 1, "昨日": 1, "yesterday": 1, "前天": 2}


def parse_date(text: str, today: date) -> date | None:
    """A day as people write it: 今天, 昨天, 11-20, 11/20, 11月20日, 2026-11-20, 2026年11月20日."""
    s = normalize(text).lower().replace(" ", "")
    if s in _RELATIVE:
        return today - timedelta(days=_RELATIVE[s])
    m = re.fullmatch(r"(?:(\d{4})[-./年])?(\d{1,2})[-./月](\d{1,2})[日号]?", s)
    m8 = None if m else re.fullmatch(r"(\d{4})(\d{2})(\d{2})", s)
    if m8:
        year, month, day = (int(g) for g in m8.groups())
        year_given = True
    elif m:
        year_given = m.group(1) is not None
        year = int(m.group(1)) if year_given else today.year
        month, day = int(m.group(2)), int(m.group(3))
    else:
        return None
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    if not year_given and found > today:
        # no year given: the most recent such day, never one in the future
        try:
            found = found.replace(year=found.year - 1)
        except ValueError:
            return None
    return found


def parse_money(text: str) -> tuple[int, str] | None:
    """An amount in yuan and what remains as a gift description: '200 水果' → (20000 fen, '水果')."""
    s = normalize(text)
    if s in {"无", "没有", "0", "none", "no", "否", "不"}:
        return 0, ""
    m = re.match(r"^(?:¥|￥)?\s*(\d+(?:\.\d{1,2})?)\s*(?:元|块|块钱|rmb|yuan|cny)?\s*[,，、;；]?\s*(.*)$",
                 s, re.IGNORECASE)
    if m:
        fen = round(float(m.group(1)) * 100)
        if fen > 10_000_000:  # 100,000 yuan: not a visit gift
            return None
        return fen, m.group(2).strip()
    # words only: a gift without money, unless the words are an amount we cannot read ("两百块")
    if re.search(r"\d|元|块|钱|百|千|万", s):
        return None
    return 0, s


def fen_to_yuan(fen: int) -> str:
    return f"{fen // 100}" if fen % 100 == 0 else f"{fen / 100:.2f}"
