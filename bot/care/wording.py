"""How a planned task reads to a person: its title and when it is due, from the `care` catalogue."""

from __future__ import annotations

from datetime import date

from bot.care.occasions import NAMES
from bot.care.planner import OVERDUE, PlannedTask
from dialogs.engine import catalog


def occasion_name(key: str | None, locale: str = catalog.DEFAULT_LOCALE) -> str | None:
    if key is None:
        return None
    if key in NAMES:
        return NAMES[key]
    ckey = f"care.occasion_{key}"
    return catalog.t(ckey, locale) if catalog.has(ckey, locale) else key


def task_title(task: PlannedTask, locale: str = catalog.DEFAULT_LOCALE) -> str:
    """e.g. 节日问候·重阳, 生日探访·陈秀珍, 难过的日子，打个电话·孩子的忌日, or a manual task's reason."""
    key = f"care.kind_{task.kind}"
    base = catalog.t(key, locale) if catalog.has(key, locale) else (task.detail or catalog.t("care.kind_other", locale))
    extra = task.member_name if task.member_name else occasion_name(task.occasion, locale)
    if task.task_id is not None and task.detail and catalog.has(key, locale):
        extra = task.detail
    return f"{base}·{extra}" if extra and extra not in base else base


def task_when(task: PlannedTask, today: date, locale: str = catalog.DEFAULT_LOCALE) -> str:
    if task.status == OVERDUE:
        return catalog.t("care.when_overdue", locale, days=task.overdue_days(today))
    if task.due == today:
        return catalog.t("care.when_today", locale)
    return catalog.t("care.when_by", locale, date=f"{task.due.month}月{task.due.day}日"
                     if locale == "zh" else task.due.isoformat())


def status_name(status: str, locale: str = catalog.DEFAULT_LOCALE) -> str:
    return catalog.t(f"care.status_{status}", locale)
