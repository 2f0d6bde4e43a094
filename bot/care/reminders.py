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
from sqlalchemy.orm import Session

from bot.care.digest_routing import Inbox, township_inboxes
from bot.care.planner import (
    BIRTHDAY,
    CLASS_INVITATION,
    DUE,
    HEALTH_SERVICE,
    HOLIDAY_GREETING,
    OVERDUE,
    QINGMING,
    PlannedTask,
    class_invitation_tasks,
    iter_batches,
    sort_key,
)
from bot.care.policy import Policy
from bot.care.wording import task_title, task_when
from dialogs.engine import catalog
from dialogs.engine.dialog import action_value
from dialogs.engine.types import Option, Reply
from dialogs.registry import ALL_DIALOGS
from domain.messages import ToQueue, enqueue_many
from storage.models import ContactAssignment, Household, Person, Role, Task, Township
from storage.queries import household_labels

if TYPE_CHECKING:
    from bot.app import App
    from bot.care.planner_bulk import TaskBatch

log = logging.getLogger("warmline.reminders")

MAX_LINES = 15
WRITE_SLICE = 200  # digests per write transaction
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
class _Digest:
    """One person's digest as it is gathered township by township: the first lines of each
    part (merged, in order) and how many lines each part has in all."""

    own: list[PlannedTask] = field(default_factory=list)
    own_total: int = 0
    escalated: list[PlannedTask] = field(default_factory=list)
    escalated_total: int = 0

    def add(self, inbox: Inbox) -> None:
        # a household's tasks all come in one township's chunk, so lines merged per chunk stay merged
        own, escalated = merge_same(inbox.own), merge_same(inbox.escalated)
        self.own = sorted(self.own + own, key=sort_key)[:MAX_LINES]
        self.own_total += len(own) if inbox.own_total is None else inbox.own_total
        self.escalated = sorted(self.escalated + escalated, key=sort_key)[:MAX_LINES]
        self.escalated_total += len(escalated) if inbox.escalated_total is None else inbox.escalated_total


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
          coordinators: dict[int, list[int]]) -> dict[int, Inbox]:
    """Who hears about which task today (a pure function, tested without a database)."""
    inboxes: dict[int, Inbox] = defaultdict(Inbox)
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


def _route_township(_session: Session, batches: list[TaskBatch], objects: list[PlannedTask], today: date,
                    policy: Policy, active: set[int], coordinators: dict[int, list[int]]) -> dict[int, Inbox]:
    return township_inboxes(batches, objects, today, policy, active, coordinators, MAX_LINES)


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


def _digest_text(person: _Person, inbox: _Digest, today: date, labels: dict[int, str],
                 names: dict[int, str], townships: dict[int, str], policy: Policy,
                 registered: set[str]) -> Reply:
    locale = person.locale or catalog.DEFAULT_LOCALE

    def t(key: str, **values: object) -> str:
        return catalog.t(f"care.{key}", locale, **values)

    lines: list[str] = []
    options: list[Option] = []
    own = inbox.own
    if own:
        lines.append(t("digest_title", name=person.name, date=f"{today.month}月{today.day}日"))
        for i, task in enumerate(own[:MAX_LINES], start=1):
            label = labels.get(task.household_id or 0, task.household_code or "")
            hint = t("hard_day_hint") if task.kind == "hard_day_call" else ""
            title = task_title(task, locale)
            lines.append(f"{i}. {label} · {title} · {task_when(task, today, locale)}{hint}")
            value = action_for(task, registered) if len(options) < MAX_OPTIONS else None
            if value:
                word = "option_reading" if task.kind == HEALTH_SERVICE else "option_visit"
                options.append(Option(t(word, code=task.household_code, task=title), value))
        if inbox.own_total > MAX_LINES:
            lines.append(t("digest_more", n=inbox.own_total - MAX_LINES))
    escalated = inbox.escalated
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
        if inbox.escalated_total > MAX_LINES:
            lines.append(t("digest_more", n=inbox.escalated_total - MAX_LINES))
    if options:
        lines.append(t("digest_footer"))
    return Reply("\n".join(lines), tuple(options))


@dataclass(frozen=True)
class _Person:
    id: int
    name: str
    locale: str | None
    active: bool


async def _people(session: AsyncSession, ids: set[int], known: dict[int, _Person]) -> None:
    """Fill `known` with the people of `ids` not in it yet (plain rows, never ORM objects)."""
    wanted = sorted(ids - set(known))
    for i in range(0, len(wanted), 1000):
        for pid, name, locale, active in await session.execute(
                select(Person.id, Person.name, Person.locale, Person.active)
                .where(Person.id.in_(wanted[i:i + 1000]))):
            known[pid] = _Person(pid, name, locale, bool(active))


async def _labels(session: AsyncSession, household_ids: set[int]) -> dict[int, str]:
    wanted = sorted(household_ids)
    labels: dict[int, str] = {}
    for i in range(0, len(wanted), 1000):
        # plain rows with the three attributes a label needs, not ORM objects a flush would walk
        households = (await session.execute(select(Household.id, Household.code, Household.village_id)
                                            .where(Household.id.in_(wanted[i:i + 1000])))).all()
        labels.update(await household_labels(session, households))  # type: ignore[arg-type]
    return labels


async def _last_township(session: AsyncSession, townships: list[int],
                         coordinators: dict[int, list[int]]) -> dict[int, int]:
    """After which township (in processing order) each person can get nothing more: their
    digest is complete and written then. A volunteer hears about the households they are the
    contact for and the tasks assigned to them; a coordinator (or admin) about the townships
    they stand for."""
    order = {t: i for i, t in enumerate(townships)}
    last: dict[int, int] = {}

    def note(person: int, township: int) -> None:
        if order.get(township, -1) > order.get(last.get(person, -1), -1):
            last[person] = township

    for person, township in await session.execute(
            select(ContactAssignment.volunteer_id, Household.township_id).distinct()
            .join(Household, Household.id == ContactAssignment.household_id)
            .where(ContactAssignment.ended_on.is_(None))):
        note(person, township)
    for person, township in await session.execute(
            select(Task.assignee_id, Household.township_id).distinct()
            .join(Household, Household.id == Task.household_id)
            .where(Task.assignee_id.is_not(None), Task.done_at.is_(None))):
        note(person, township)
    for township, people in coordinators.items():
        for person in people:
            note(person, township)
    return last


async def plan_reminders(app: App, at: datetime | None = None) -> ScheduleReport:
    """Plan everything due at instant `at` into the outbox (idempotent); see the module docstring.

    Township by township: the township's due and overdue tasks are planned, routed and folded
    into each person's digest, then the digests of everyone who can get nothing from a later
    township are written, `WRITE_SLICE` per transaction. A tick that stops half-way has
    committed whole slices; the next tick plans again and writes only the digests missing (each
    has its idempotency key), so it carries on where the other stopped.
    """
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
        township_names = {tid: tname for tid, tname in await session.execute(select(Township.id, Township.name))}
        townships = sorted(township_names)
        coordinators = await _coordinators(session, set(townships))
        last_township = await _last_township(session, townships, coordinators)
    people: dict[int, _Person] = {}
    digests: dict[int, _Digest] = {}

    async def write(session: AsyncSession, person_ids: list[int]) -> None:
        ready = [pid for pid in sorted(person_ids) if pid in digests]
        await _people(session, set(ready), people)
        labels = await _labels(session, {t.household_id for pid in ready for t in digests[pid].own
                                         + digests[pid].escalated if t.household_id is not None})
        names = {pid: p.name for pid, p in people.items()}
        outgoing = []
        for pid in ready:
            digest, person = digests.pop(pid), people.get(pid)
            if person is None or not person.active:
                continue
            reply = _digest_text(person, digest, today, labels, names, township_names, policy, registered)
            outgoing.append((ToQueue(pid, reply, DIGEST_KIND, digest_key(pid, today), expires_at=next_digest),
                             digest.escalated_total))
        written = await enqueue_many(session, [o for o, _ in outgoing], at)
        for message, escalated in outgoing:
            if message.key in written:
                report.digests += 1
                report.escalated_tasks += escalated
                report.people.append(message.person_id)
            else:
                report.skipped_existing += 1

    async def write_in_slices(person_ids: list[int]) -> None:
        # short write transactions: a webhook waiting for the database's write lock waits for
        # one slice, not a township (SQLite has one writer)
        for i in range(0, len(person_ids), WRITE_SLICE):
            async with app.db.async_session() as session:
                await write(session, person_ids[i:i + WRITE_SLICE])

    for township in townships:
        async with app.db.async_session() as session:
            def collect(sync_session: Session, township: int = township) -> tuple[list[TaskBatch], list[PlannedTask]]:
                """The township's plan as column batches (volunteers and codes loaded), and the
                tasks that are objects anyway (manual tasks, the class invitation)."""
                batches = list(iter_batches(sync_session, at, policy, tz=tz, township_id=township))
                objects = [t for b in batches for t in b.manual]
                objects += class_invitation_tasks(sync_session, today, tz, policy, township)
                for batch in batches:
                    batch.labels.volunteers(), batch.labels.codes()
                return batches, objects

            batches, objects = await session.run_sync(collect)
            helpers = {v for b in batches for v in b.labels.volunteers().values()}
            await _people(session, helpers | {t.volunteer_id for t in objects if t.volunteer_id is not None}, people)
            active = {pid for pid, p in people.items() if p.active}
            # in the session's thread of control: building task objects may read members' names
            inboxes = await session.run_sync(_route_township, batches, objects, today, policy, active,
                                             coordinators)
            for person_id, inbox in inboxes.items():
                digests.setdefault(person_id, _Digest()).add(inbox)
            del batches, objects, inboxes
        await write_in_slices(sorted(pid for pid in digests if last_township.get(pid, township) == township))
    if digests:  # anyone the forecast missed (records changed during the tick)
        await write_in_slices(sorted(digests))
    log.info("reminders planned digests=%d escalated=%d already=%d", report.digests,
             report.escalated_tasks, report.skipped_existing)
    return report
