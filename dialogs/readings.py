"""Blood pressure and glucose as people really type them.

`parse_reading` is deliberately generous (135/85, 135 85, １３５／８５, 高压135低压85, 血糖6.8,
餐后 8.2). Whether a reading makes sense or is dangerous is the program's rule, in
`domain/readings.py`.
"""

from __future__ import annotations

import re

from dialogs.parsing import normalize
from domain.readings import Reading, danger_reasons, implausible

__all__ = ["GLUCOSE_CONTEXTS", "Reading", "danger_reasons", "implausible", "parse_blood_pressure",
           "parse_glucose", "parse_reading"]

GLUCOSE_CONTEXTS = {"fasting": ("空腹", "fasting", "早上"), "after_meal": ("餐后", "饭后", "after"),
                    "random": ("随机", "random", "随时")}


_NUM = r"(\d{1,3}(?:\.\d+)?)"


def _int(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _context(text: str) -> str | None:
    lowered = text.lower()
    for key, words in GLUCOSE_CONTEXTS.items():
        if any(w in lowered for w in words):
            return key
    return None


def parse_glucose(text: str) -> Reading:
    s = normalize(text).lower()
    context = _context(s)
    m = re.search(r"(?:血糖|glucose|bg|空腹|餐后|饭后|随机)\D{0,4}?" + _NUM, s)
    if m is None:
        m = re.fullmatch(r"\D{0,6}?(\d{1,2}\.\d+|\d{1,2})\s*(?:mmol(?:/l)?)?\D{0,6}", s)
    if m is None:
        return Reading(glucose_context=context)
    return Reading(glucose=float(m.group(1)), glucose_context=context)


def parse_blood_pressure(text: str) -> Reading:
    s = normalize(text).lower()
    high = re.search(r"(?:高压|收缩压|sys\w*|上压)\D{0,3}?(\d{2,3})", s)
    low = re.search(r"(?:低压|舒张压|dia\w*|下压)\D{0,3}?(\d{2,3})", s)
    pulse_m = re.search(r"(?:脉搏|心率|心跳|pulse|hr)\D{0,3}?(\d{2,3})", s)
    pulse = int(pulse_m.group(1)) if pulse_m else None
    if high and low:
        return Reading(systolic=int(high.group(1)), diastolic=int(low.group(1)), pulse=pulse)
    pair = re.search(r"(\d{2,3})\s*(?:/|／|\\|-|\s|比|:)\s*(\d{2,3})(?:\s*(?:/|\s|,|，)\s*(\d{2,3}))?", s)
    if pair:
        if pulse is None and pair.group(3):
            pulse = int(pair.group(3))
        return Reading(systolic=int(pair.group(1)), diastolic=int(pair.group(2)), pulse=pulse)
    return Reading(pulse=pulse)


def parse_reading(text: str) -> Reading:
    """Whatever readings the text holds; glucose only where it is named or clearly a decimal."""
    s = normalize(text).lower()
    bp_part, glucose_part = s, ""
    marker = re.search(r"血糖|glucose|空腹|餐后|饭后", s)
    if marker:
        bp_part, glucose_part = s[: marker.start()], s[marker.start():]
    reading = parse_blood_pressure(bp_part)
    if glucose_part:
        reading = reading.merged(parse_glucose(glucose_part))
    return reading
