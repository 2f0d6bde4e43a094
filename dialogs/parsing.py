"""Forgiving input: what volunteers really type, turned into values or a clear 'no'.

Everything goes through NFKC first, so full-width digits and punctuation (１３５／８５) read
like their ASCII forms.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, time, timedelta

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


# ----------------------------------------------------------- times and coming days
# Activities are planned ahead, so these read dates forward: "11-25" is the next 25 November,
# "周三" the coming Wednesday, and a time may be written the way people say it (下午两点半).

_NUM = r"(?:\d{1,2}|[零〇一二两三四五六七八九十廿]+)"
_PERIODS = {"凌晨": 0, "早上": 0, "早晨": 0, "上午": 0, "中午": 12, "下午": 12, "傍晚": 12,
            "晚上": 12, "晚": 12}
_TIME_RE = re.compile(
    rf"(?P<period>凌晨|早上|早晨|上午|中午|下午|傍晚|晚上|晚)?\s*"
    rf"(?:(?P<h1>\d{{1,2}})\s*:\s*(?P<m1>\d{{2}})"
    rf"|(?P<h2>{_NUM})\s*(?:[点时]\s*(?:(?P<half>半)|(?P<m2>{_NUM})\s*分?)?)?)"
    rf"\s*(?P<ampm>am|pm)?$",
    re.IGNORECASE,
)
_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
# a day without a year up to this long ago is a mistake to point out, not next year's date
_ROLL_OVER = timedelta(days=60)
_AHEAD = {"今天": 0, "今日": 0, "today": 0, "明天": 1, "明日": 1, "tomorrow": 1, "后天": 2,
          "大后天": 3}


def _number(text: str | None) -> int | None:
    if text is None:
        return None
    return int(text) if text.isdigit() else chinese_number(text)


def _time_from(match: re.Match[str]) -> time | None:
    if match.group("h2") and not match.group("ampm") and not re.search(r"[点时]", match.group(0)):
        return None  # a bare number is not a time
    hour = _number(match.group("h1") or match.group("h2"))
    minute = 30 if match.group("half") else _number(match.group("m1") or match.group("m2")) or 0
    if hour is None or minute is None:
        return None
    period = match.group("period")
    ampm = (match.group("ampm") or "").lower()
    if (period and _PERIODS[period] == 12 and hour < 12) or (ampm == "pm" and hour < 12):
        hour += 12
    if ampm == "am" and hour == 12:
        hour = 0
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(hour, minute)


def parse_time(text: str) -> time | None:
    """A time of day as people write it: 14:30, 14点, 9点半, 下午2点, 下午两点半, 2:30pm."""
    match = _TIME_RE.fullmatch(normalize(text))
    return _time_from(match) if match else None


def parse_future_date(text: str, today: date) -> date | None:
    """A coming day: 今天, 明天, 后天, 周三, 下周三, 11-25, 11月25日, 十一月二十五日, 2026-11-25.

    Without a year, the next such day: a date long past this year (over two months) is next
    year's, one just past is returned as it is, so the caller can say it has passed. A day
    written with its year is returned as written.
    """
    s = normalize(text).lower().replace(" ", "")
    if s in _AHEAD:
        return today + timedelta(days=_AHEAD[s])
    week = re.fullmatch(r"(下下|下个?|这个?|本)?(?:周|星期|礼拜)([一二三四五六日天])", s)
    if week:
        target = _WEEKDAYS[week.group(2)]
        prefix = week.group(1) or ""
        if prefix.startswith("下下"):
            monday = today - timedelta(days=today.weekday()) + timedelta(days=14)
            return monday + timedelta(days=target)
        if prefix.startswith("下"):
            monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
            return monday + timedelta(days=target)
        if prefix:  # 这周三, 本周三: this week's, even if it has passed
            return today - timedelta(days=today.weekday()) + timedelta(days=target)
        return today + timedelta(days=(target - today.weekday()) % 7)
    cn = re.fullmatch(rf"(?:(\d{{4}})年)?({_NUM})月({_NUM})[日号]?", s)
    if cn and not (cn.group(2).isdigit() and cn.group(3).isdigit()):
        month, day = _number(cn.group(2)), _number(cn.group(3))
        if month is None or day is None:
            return None
        s = (f"{cn.group(1)}-" if cn.group(1) else "") + f"{month}-{day}"
    m = re.fullmatch(r"(?:(\d{4})[-./年])?(\d{1,2})[-./月](\d{1,2})[日号]?", s)
    m8 = None if m else re.fullmatch(r"(\d{4})(\d{2})(\d{2})", s)
    try:
        if m8:
            return date(*(int(g) for g in m8.groups()))
        if not m:
            return None
        if m.group(1):
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        found = date(today.year, int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    if found < today - _ROLL_OVER:
        try:
            found = found.replace(year=today.year + 1)
        except ValueError:  # 29 February
            return None
    return found


def parse_when(text: str, today: date) -> tuple[date | None, time | None]:
    """A coming day and a time in one answer: '11月25日 下午2点', '明天14:30', '下周三 9点半'.

    The time is read from the end; what comes before it is the day (today if nothing does).
    Either part is None when it cannot be read, so the caller can ask for exactly that part.
    """
    s = normalize(text)
    match = _TIME_RE.search(s)
    # search finds the earliest match that reaches the end; a bare day number ("11-25") is not a time
    while (match is not None and match.group("h2") and not match.group("ampm")
           and not re.search(r"[点时]", match.group(0))):
        match = _TIME_RE.search(s, match.start() + 1)
    when = _time_from(match) if match else None
    rest = s[: match.start()].strip() if match else s
    if match is not None and not rest:
        return today, when
    return parse_future_date(rest, today), when
