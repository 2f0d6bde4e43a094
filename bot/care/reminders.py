"""Reminders: each volunteer's morning digest, and the township coordinator's overdue digest.

`plan_reminders(app, at)` is the one entry point — `warmline schedule` calls it once, the
scheduler calls it on its own clock. It writes at most one digest per person per local day
(idempotency key `digest:<person_id>:<local date>`), so running it twice plans nothing twice.
Before the digest time (default 08:00 local) it writes nothing.

A volunteer's digest lists the due and overdue tasks of the households they are the contact
volunteer for; each comes with an option that starts the matching dialog pre-filled. Tasks
overdue by N days (default 3), tasks of households with no (active) contact volunteer and the
township's monthly class invitation go to the township's coordinators (else the county admins).
A person who is both gets one message with both parts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.care.planner import (
    BIRTHDAY,
    CLASS_INVITATION,
    DUE,
    HEALTH_SERVICE,
    HOLIDAY_GREETING,
    OVERDUE,
    QINGMING,
    PlannedTask,
    iter_plan,
    sort_key,
)
from bot.care.policy import Policy
from bot.care.wording import task_title, task_when
from dialogs.engine import catalog
from dialogs.engine.context import queue_message
from dialogs.engine.dialog import action_value
from dialogs.engine.types import Option, Reply
from dialogs.registry import ALL_DIALOGS
from storage.models import Household, Person, Role, Township
from storage.queries import household_labels

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.reminders")

MAX_LINES = 15
MAX_OPTIONS = 10
DIGEST_KIND = "reminder"
# The dialog that records each kind of task; a kind whose dialog is not registered gets no option.
DIALOG_FOR_KIND = {
    "weekly_greeting": "visit", "holiday_greeting": "visit", "birthday_visit": "visit",
    "hard_day_call": "visit", "health_service": "reading", "intake": "intake",
    "assessment": "assessment",
}


@dataclass
class ScheduleReport:
    """What one planning run wrote: counts only, never names or message text."""

    digests: int = 0
    escalated_tasks: int = 0
    skipped_existing: int = 0
    people: list[int] = field(default_factory=list)


@dataclass
class _Inbox:
    own: list[PlannedTask] = field(default_factory=list)
    escalated: list[PlannedTask] = field(default_factory=list)


def digest_key(person_id: int, day: date) -> str:
    return f"digest:{person_id}:{day.isoformat()}"


def action_for(task: PlannedTask, registered: set[str]) -> str | None:
    """The option value that starts the dialog recording `task`, pre-filled, or None."""
    dialog = DIALOG_FOR_KIND.get(task.kind)
    if dialog is None or dialog not in registered or task.household_id is None:
        return None
    if dialog == "visit":
        occasion = task.occasion if task.kind == HOLIDAY_GREETING else None
        if task.occasion in (BIRTHDAY, QINGMING):
            occasion = task.occasion
        if occasion:
            return action_value("visit", household_id=task.household_id, occasion=occasion)
    return action_value(dialog, household_id=task.household_id)


def merge_same(tasks: list[PlannedTask]) -> list[PlannedTask]:
    """One line per (household, kind, occasion, member): last week's overdue call and this
    week's due call are one call to make."""
    seen: dict[tuple[object, ...], PlannedTask] = {}
    for task in sorted(tasks, key=sort_key):
        seen.setdefault((task.household_id, task.township_id, task.kind, task.occasion, task.member_id), task)
    return sorted(seen.values(), key=sort_key)


def route(tasks: list[PlannedTask], today: date, policy: Policy, active_volunteers: set[int],
          coordinators: dict[int, list[int]]) -> dict[int, _Inbox]:
    """Who hears about which task today (a pure function, tested without a database)."""
    inboxes: dict[int, _Inbox] = defaultdict(_Inbox)
    for task in tasks:
        if task.status not in (DUE, OVERDUE):
            continue
        has_volunteer = task.volunteer_id is not None and task.volunteer_id in active_volunteers
        if task.kind != CLASS_INVITATION and has_volunteer:
            assert task.volunteer_id is not None
            inboxes[task.volunteer_id].own.append(task)
        late = task.overdue_days(today) >= policy.overdue_escalation_days
        if task.kind == CLASS_INVITATION or not has_volunteer or late:
            for coordinator in coordinators.get(task.township_id, []):
                inboxes[coordinator].escalated.append(task)
    return inboxes


async def _coordinators(session: AsyncSession, township_ids: set[int]) -> dict[int, list[int]]:
    rows = (await session.execute(
        select(Person.id, Person.township_id, Person.role).where(
            Person.active.is_(True), Person.role.in_((Role.COORDINATOR, Role.ADMIN)))
    )).all()
    admins = [pid for pid, _t, role in rows if role == Role.ADMIN]
    out: dict[int, list[int]] = {}
    for township in township_ids:
        local = [pid for pid, t, role in rows if role == Role.COORDINATOR and t == township]
        out[township] = local or admins
    return out


def _digest_text(person: Person, inbox: _Inbox, today: date, labels: dict[int, str],
                 names: dict[int, str], townships: dict[int, str], policy: Policy,
                 registered: set[str]) -> Reply:
    locale = person.locale or catalog.DEFAULT_LOCALE

    def t(key: str, **values: object) -> str:
        return catalog.t(f"care.{key}", locale, **values)

    lines: list[str] = []
    options: list[Option] = []
    own = merge_same(inbox.own)
    if own:
        lines.append(t("digest_title", name=person.name, date=f"{today.month}月{today.day}日"))
        for i, task in enumerate(own[:MAX_LINES], start=1):
            label = labels.get(task.household_id or 0, task.household_code or "")
            hint = t("hard_day_hint") if task.kind == "hard_day_call" else ""
            lines.append(f"{i}. {label} · {task_title(task, locale)} · {task_when(task, today, locale)}{hint}")
            value = action_for(task, registered)
            if value and len(options) < MAX_OPTIONS:
                word = "option_reading" if task.kind == HEALTH_SERVICE else "option_visit"
                options.append(Option(t(word, code=task.household_code, task=task_title(task, locale)), value))
        if len(own) > MAX_LINES:
            lines.append(t("digest_more", n=len(own) - MAX_LINES))
    escalated = merge_same(inbox.escalated)
    if escalated:
        if lines:
            lines.append("")
        lines.append(t("escalation_title", name=person.name, days=policy.overdue_escalation_days))
        for i, task in enumerate(escalated[:MAX_LINES], start=1):
            if task.kind == CLASS_INVITATION:
                lines.append(f"{i}. {townships.get(task.township_id, '')} {t('class_line', date=task.due.isoformat())}")
                continue
            label = labels.get(task.household_id or 0, task.household_code or "")
            who = (t("escalation_line_volunteer", volunteer=names[task.volunteer_id])
                   if task.volunteer_id in names else t("escalation_line_unassigned"))
            lines.append(f"{i}. {label} · {task_title(task, locale)} · {task_when(task, today, locale)}{who}")
        if len(escalated) > MAX_LINES:
            lines.append(t("digest_more", n=len(escalated) - MAX_LINES))
    if options:
        lines.append(t("digest_footer"))
    return Reply("\n".join(lines), tuple(options))


async def plan_reminders(app: App, at: datetime | None = None) -> ScheduleReport:
    """Plan everything due at instant `at` into the outbox (idempotent); see the module docstring."""
    at = at or app.services.now()
    tz = app.settings.timezone
    policy = Policy.from_settings(app.settings)
    local = at.astimezone(tz)
    today = local.date()
    report = ScheduleReport()
    if local.time() < policy.digest_time:
        return report
    registered = {d.name for d in ALL_DIALOGS}
    next_digest = datetime.combine(today + timedelta(days=1), policy.digest_time, tzinfo=tz)
    async with app.db.async_session() as session:
        def collect(sync_session: object) -> list[PlannedTask]:
            wanted: list[PlannedTask] = []
            for part in iter_plan(sync_session, at, policy, tz=tz,  # type: ignore[arg-type]
                                  statuses=(DUE, OVERDUE)):
                wanted.extend(part)
            return wanted

        tasks = await session.run_sync(collect)
        volunteer_ids = {t.volunteer_id for t in tasks if t.volunteer_id is not None}
        people = {p.id: p for p in await session.scalars(
            select(Person).where(Person.id.in_(volunteer_ids)))}
        active = {pid for pid, p in people.items() if p.active}
        coordinators = await _coordinators(session, {t.township_id for t in tasks})
        inboxes = route(tasks, today, policy, active, coordinators)
        if not inboxes:
            return report
        recipients = {p.id: p for p in await session.scalars(select(Person).where(Person.id.in_(list(inboxes))))}
        household_ids = {t.household_id for box in inboxes.values() for t in box.own + box.escalated
                         if t.household_id is not None}
        households = list(await session.scalars(select(Household).where(Household.id.in_(household_ids))))
        labels = await household_labels(session, households)
        names = {pid: p.name for pid, p in people.items()}
        townships = {tid: tname for tid, tname in await session.execute(select(Township.id, Township.name))}
        # Everything needed is read; a county's worth of loaded objects would make every flush
        # below walk them all (measured: 12,500 digests over 100k households took a minute).
        session.expunge_all()
        for person_id, inbox in sorted(inboxes.items()):
            person = recipients.get(person_id)
            if person is None or not person.active:
                continue
            reply = _digest_text(person, inbox, today, labels, names, townships, policy, registered)
            row = await queue_message(session, person_id=person_id, reply=reply, kind=DIGEST_KIND,
                                      key=digest_key(person_id, today), now=at, expires_at=next_digest)
            if row is None:
                report.skipped_existing += 1
                continue
            report.digests += 1
            report.escalated_tasks += len(merge_same(inbox.escalated))
            report.people.append(person_id)
    log.info("reminders planned digests=%d escalated=%d already=%d", report.digests,
             report.escalated_tasks, report.skipped_existing)
    return report
