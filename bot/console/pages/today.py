"""今日 — what is due, overdue and escalated today, by township and volunteer, and the danger
readings nobody has followed up yet.

Tasks come from the planner (`plan_async`, the same call as `warmline due` and the digests);
which of them are escalated to this coordinator is the reminders' routing rule (`route`), and
"followed up" is the report's rule (`follow_up_times`). Nothing is decided here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.care.planner import DUE, OVERDUE, PlannedTask, plan_async
from bot.care.policy import Policy
from bot.care.reminders import route
from bot.care.wording import task_title
from bot.console.web import Page
from bot.reports.figures import follow_up_times
from bot.reports.sqlfuncs import local_day
from storage.models import HealthReading, Household, HouseholdMember, Person, Role, Township
from storage.scope import visible_households

SHOWS = ("all", "overdue", "escalated")
DANGER_DAYS_SHOWN = 60  # older unanswered danger readings are in the report, not the morning list


@dataclass
class Row:
    task: PlannedTask
    title: str
    escalated: bool
    overdue_days: int


@dataclass
class Group:
    township: str
    volunteer: str
    rows: list[Row]

    @property
    def overdue(self) -> int:
        return sum(r.task.status == OVERDUE for r in self.rows)


async def _tasks(page: Page) -> tuple[list[Row], dict[int, str], dict[int, str]]:
    app, person = page.console.app, page.person
    policy = Policy.from_settings(app.settings)
    tz = app.settings.timezone
    if person.role != Role.ADMIN and person.township_id is None:
        return [], {}, {}
    township_id = None if person.role == Role.ADMIN else person.township_id
    planned = [t for t in await plan_async(page.session, page.now(), policy, township_id=township_id, tz=tz)
               if t.status in (DUE, OVERDUE)]
    active = set(await page.session.scalars(select(Person.id).where(
        Person.active.is_(True), Person.role == Role.VOLUNTEER)))
    today = page.now().astimezone(tz).date()
    inboxes = route(planned, today, policy, active, {t.township_id: [person.id] for t in planned})
    escalated = {t.key for t in inboxes[person.id].escalated} if person.id in inboxes else set()
    rows = [Row(t, task_title(t), t.key in escalated, t.overdue_days(today)) for t in planned]
    townships = dict((await page.session.execute(select(Township.id, Township.name))).all())
    volunteer_ids = {t.volunteer_id for t in planned if t.volunteer_id}
    names = dict((await page.session.execute(
        select(Person.id, Person.name).where(Person.id.in_(volunteer_ids)))).all())
    return rows, townships, names


def _groups(rows: list[Row], townships: dict[int, str], names: dict[int, str]) -> list[Group]:
    grouped: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        volunteer = names.get(row.task.volunteer_id or 0, "")
        grouped[(townships.get(row.task.township_id, ""), volunteer)].append(row)
    return [Group(t, v, sorted(rs, key=lambda r: (r.task.status != OVERDUE, r.task.due)))
            for (t, v), rs in sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1] == "", kv[0][1]))]


async def open_danger_readings(page: Page, now: datetime) -> list[dict[str, Any]]:
    """Danger readings in this person's scope with no follow-up yet (newest first)."""
    tz = page.console.app.settings.timezone
    offset = now.astimezone(tz).utcoffset()
    r = HealthReading
    nxt_reading, nxt_visit = follow_up_times(
        local_day(r.measured_at, tz.key, int(offset.total_seconds() // 60) if offset else 0))
    scope = visible_households(page.person).with_only_columns(Household.id)
    since = now - timedelta(days=DANGER_DAYS_SHOWN)
    rows = (await page.session.execute(
        select(r, Household.code, Person.name)
        .join(Household, Household.id == r.household_id)
        .outerjoin(HouseholdMember, HouseholdMember.id == r.member_id)
        .outerjoin(Person, Person.id == HouseholdMember.person_id)
        .where(r.danger.is_(True), r.followed_up_at.is_(None), r.household_id.in_(scope),
               r.measured_at >= since, nxt_reading.is_(None), nxt_visit.is_(None))
        .order_by(r.measured_at.desc()))).all()
    return [{"reading": reading, "code": code, "member": name or "",
             "hours": int((now - reading.measured_at).total_seconds() // 3600)}
            for reading, code, name in rows]


async def today_page(page: Page) -> Any:
    show = page.request.query_params.get("show", "all")
    show = show if show in SHOWS else "all"
    rows, townships, names = await _tasks(page)
    counts = {"all": len(rows), "overdue": sum(r.task.status == OVERDUE for r in rows),
              "escalated": sum(r.escalated for r in rows),
              "due": sum(r.task.status == DUE for r in rows)}
    if show == "overdue":
        rows = [r for r in rows if r.task.status == OVERDUE]
    elif show == "escalated":
        rows = [r for r in rows if r.escalated]
    danger = await open_danger_readings(page, page.now())
    return page.render("today.html", active="today", show=show, shows=SHOWS, counts=counts,
                       groups=_groups(rows, townships, names), danger=danger,
                       today=page.now().astimezone(page.console.app.settings.timezone).date())
