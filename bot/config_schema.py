"""The one schema a county's configuration file is checked against.

The packaged defaults (`bot/defaults/*.toml`) *are* the schema: every section and key they hold
is a setting, and its default value gives its type. A few rules add what a type cannot say —
ranges (danger thresholds within physiological bounds), clock times, durations, counts, known
occasion keys — and a few tables are open (template names, budget sources). Why this way: a
setting added to a defaults file is known to the checker at once, with no second list to keep.

A county's file is checked whole, and every mistake is reported on its own line, in Chinese and
English, naming the nearest valid key for a misspelt one (`systolic_hihg` → `systolic_high`).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.care.occasions import NAMES as OCCASION_NAMES

# Tables whose keys are chosen by the county; the value every key must have.
OPEN_TABLES: dict[str, Any] = {
    "outreach.templates": "text",
    "wechat.templates": {"template_id": "", "url": "", "max_chars": 20, "fields": {}},
    "wechat.templates.*.fields": "text",
    "sms.templates": {"template_code": "", "params": {}},
    "sms.templates.*.params": "text",
    "reports.budget_lines.sources": "number",
}
# Settings a county may add although the defaults leave them out (commented there).
OPTIONAL: dict[str, Any] = {"outreach.festivals": ["new_year"]}

# (low, high, unit): inclusive bounds. Danger thresholds stay within what a reading can be and
# still mean "danger": a systolic alert at 90 mmHg, or below 0, would alert on every reading.
RANGES: dict[str, tuple[float, float, str]] = {
    "health.systolic_high": (130, 250, "mmHg"),
    "health.diastolic_high": (80, 150, "mmHg"),
    "health.systolic_low": (50, 110, "mmHg"),
    "health.glucose_low": (1.5, 5.0, "mmol/L"),
    "health.glucose_high": (7.0, 33.3, "mmol/L"),
    "policy.class_invitation_due_day": (1, 28, ""),
    "policy.greeting_every_days": (1, 366, ""),
    "policy.holiday_min_per_year": (0, 366, ""),
    "delivery.jitter": (0, 1, ""),
    "wechat.reply_budget_seconds": (0.5, 4.8, "s"),
    "wecom.reply_budget_seconds": (0.5, 4.8, "s"),
    "activities.reminder_days_before": (0, 60, ""),
    "scheduler.job_process_nice": (0, 19, ""),
    "core.step_processes": (0, 64, ""),
}
# Settings that take one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {"scheduler.jobs_in": ("process", "thread")}
# (lower, higher): the first must be below the second.
ORDERED = (("health.systolic_low", "health.systolic_high"), ("health.glucose_low", "health.glucose_high"),
           ("telegram.reconnect_min_seconds", "telegram.reconnect_max_seconds"),
           ("delivery.base_delay_seconds", "delivery.max_delay_seconds"))
TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
DURATION = re.compile(r"_(seconds|minutes|hours|days|months)$|_days_(before|after)$")
# Durations that may be 0 ("on the day itself", "no grace").
MAY_BE_ZERO = re.compile(r"_days_(before|after)$|^delivery\.max_hold_seconds$|^policy\.lookback_days$")
COUNT = re.compile(r"(per_(month|year|second|minute|hour|day)|_bytes|max_attempts|batch_size|concurrency|max_chars"
                   r"|_failures|_yuan)$")
OCCASION_LISTS = ("policy.holiday_occasions", "outreach.festivals")
TIMES = ("program.quiet_hours.start", "program.quiet_hours.end")


@dataclass(frozen=True)
class Problem:
    """One mistake in a configuration file: where, what in Chinese, what in English."""

    where: str
    zh: str
    en: str

    def __str__(self) -> str:
        return f"{self.where}: {self.zh} / {self.en}"


def _label(path: str) -> str:
    """`health.systolic_high` → `[health] systolic_high`, as the file shows it."""
    section, _, key = path.rpartition(".")
    return f"[{section}] {key}" if section else f"[{key}]"


def _nearest(word: str, choices: list[str]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _unknown(path: str, key: str, choices: list[str], what: str) -> Problem:
    near = _nearest(key, choices)
    zh = "没有这个" + {"setting": "设置", "section": "部分", "occasion": "节日"}.get(what, what)
    en = f"unknown {what}"
    if near:
        zh += f"，您是不是想写 {near}？"
        en += f"; did you mean {near}?"
    else:
        listed = ", ".join(sorted(choices)[:12])
        zh += f"（可用：{listed}）"
        en += f" (valid: {listed})"
    return Problem(_label(path), zh, en)


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "text"
    if isinstance(default, list):
        return "tables" if default and isinstance(default[0], dict) else "list"
    return "table"


KIND_WORDS = {"bool": ("true 或 false", "true or false"), "int": ("整数", "a whole number"),
              "number": ("数字", "a number"), "text": ("文字（加引号）", "text in quotes"),
              "list": ("列表，例如 [\"a\", \"b\"]", "a list such as [\"a\", \"b\"]"),
              "table": ("表", "a table"), "tables": ("表的列表", "a list of tables")}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "text":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "tables":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    return isinstance(value, dict)


def check(user: dict[str, Any], defaults: dict[str, Any]) -> list[Problem]:
    """Every mistake in a county's file (`user`), judged against the packaged defaults."""
    problems = list(_walk(user, defaults, ""))
    if not problems:
        problems += _relations(user, defaults)
    return problems


def _walk(user: dict[str, Any], schema: dict[str, Any], prefix: str) -> Iterator[Problem]:
    section = re.sub(r"\[\d+\]", "", prefix.rstrip("."))
    extra = {p.rpartition(".")[2]: v for p, v in OPTIONAL.items() if p.rpartition(".")[0] == section}
    for key, value in user.items():
        path = f"{prefix}{key}"
        if key in schema:
            default = schema[key]
        elif key in extra:
            default = extra[key]
        else:
            yield _unknown(path, key, [*schema, *extra], "setting" if prefix else "section")
            continue
        yield from _value(path, value, default)


# Settings that take more than one type (the first is the default's).
EITHER: dict[str, tuple[str, ...]] = {"console.secure_cookies": ("text", "bool")}


def _value(path: str, value: Any, default: Any) -> Iterator[Problem]:
    kind = _kind(default)
    if path in EITHER and any(_type_ok(k, value) for k in EITHER[path]):
        return
    if kind == "int" and re.search(r"_(seconds|minutes|hours)$", path):
        kind = "number"  # "90.5 minutes" is a fine duration
    if _open(path):
        yield from _open_table(path, value)
        return
    if not _type_ok(kind, value):
        zh, en = KIND_WORDS[kind]
        yield Problem(_label(path), f"应当是{zh}，现在是 {value!r}", f"must be {en}, not {value!r}")
        return
    if kind == "table":
        yield from _walk(value, default, f"{path}.")
    elif kind == "tables":
        keys = default[0] if default else {}
        for n, item in enumerate(value, start=1):
            yield from _walk(item, keys, f"{path}[{n}].")
    else:
        yield from _rules(path, value)


def _open(path: str) -> Any:
    """The value kind of an open table at `path` (list indexes ignored), or None."""
    plain = re.sub(r"\[\d+\]", "", path)
    return next((kind for pattern, kind in OPEN_TABLES.items() if fnmatch.fnmatchcase(plain, pattern)), None)


def _open_table(path: str, value: Any) -> Iterator[Problem]:
    if not isinstance(value, dict):
        yield Problem(_label(path), "应当是表", "must be a table")
        return
    want = _open(path) or "text"
    for key, item in value.items():
        if isinstance(want, dict):  # each entry is a table of known keys (a template)
            yield from _value(f"{path}.{key}", item, want)
        elif not _type_ok(want, item):
            zh, en = KIND_WORDS[want]
            yield Problem(_label(f"{path}.{key}"), f"应当是{zh}", f"must be {en}")


def _rules(path: str, value: Any) -> Iterator[Problem]:
    name = path.rpartition(".")[2]
    plain = re.sub(r"\[\d+\]", "", path)
    if plain in CHOICES:
        if value not in CHOICES[plain]:
            words = " / ".join(f'"{c}"' for c in CHOICES[plain])
            yield Problem(_label(path), f"应当是 {words} 之一，现在是 {value!r}", f"must be one of {words}, not {value!r}")
        return
    if plain in RANGES:
        low, high, unit = RANGES[plain]
        if not low <= value <= high:
            yield Problem(_label(path), f"应在 {low:g}–{high:g}{unit} 之间，现在是 {value}",
                          f"must be between {low:g} and {high:g}{' ' + unit if unit else ''}, not {value}")
            return
    if name.endswith("_time") or plain in TIMES:
        if not TIME.match(str(value)):
            yield Problem(_label(path), f"时间要写成 HH:MM（如 \"08:00\"），现在是 {value!r}",
                          f"a time must be HH:MM such as \"08:00\", not {value!r}")
        return
    if plain == "program.timezone":
        try:
            ZoneInfo(str(value))
        except (ZoneInfoNotFoundError, ValueError):
            yield Problem(_label(path), f"不认识的时区 {value!r}（例如 Asia/Shanghai）",
                          f"unknown time zone {value!r} (e.g. Asia/Shanghai)")
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        zero_ok = bool(MAY_BE_ZERO.search(plain)) or plain.endswith(("_per_month", "_yuan")) or plain in RANGES
        limited = DURATION.search(name) or DURATION.search(plain) or COUNT.search(plain)
        if limited and (value < 0 or (value == 0 and not zero_ok)):
            yield Problem(_label(path), f"应当{'不小于 0' if zero_ok else '大于 0'}，现在是 {value}",
                          f"must be {'0 or more' if zero_ok else 'more than 0'}, not {value}")
        return
    if plain in OCCASION_LISTS and isinstance(value, list):
        for item in value:
            if item not in OCCASION_NAMES:
                problem = _unknown(path, str(item), list(OCCASION_NAMES), "occasion")
                yield Problem(f"{problem.where} {item!r}", problem.zh, problem.en)


def _get(raw: dict[str, Any], path: str) -> Any:
    node: Any = raw
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _relations(user: dict[str, Any], defaults: dict[str, Any]) -> list[Problem]:
    out = []
    for low, high in ORDERED:
        if _get(user, low) is None and _get(user, high) is None:
            continue
        a = _get(user, low) if _get(user, low) is not None else _get(defaults, low)
        b = _get(user, high) if _get(user, high) is not None else _get(defaults, high)
        if a is not None and b is not None and not a < b:
            out.append(Problem(f"{_label(low)} / {high.rpartition('.')[2]}",
                               f"{low.rpartition('.')[2]}（{a}）应小于 {high.rpartition('.')[2]}（{b}）",
                               f"{low.rpartition('.')[2]} ({a}) must be below {high.rpartition('.')[2]} ({b})"))
    return out


def leaves(raw: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every setting, tables flattened; lists of tables kept whole."""
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in ("program.quiet_hours",):
            yield from leaves(value, f"{path}.")
        else:
            yield path, value
