"""The planner: every task the program's rhythm asks of someone, with its window and status.

How it works, and why this way:
- A handful of set-based queries per chunk of households (scope, contacts, readings, case files,
  assessments, members, children, manual tasks) load plain facts; no query runs per household.
- Small pure functions turn one household's facts into task *drafts* (kind, occasion, window
  opens/due/closes, the rule that resolves it) and resolve each against the recorded contacts.
- `status_of` is the one place the status rule is written:
  before the window opens `upcoming`; until the due day `due`; after it `overdue` until the
  window closes, then `missed`; `done` as soon as a matching record exists.

Periodic greetings use fixed periods (ISO weeks for a 7-day rhythm) so that "this week's call"
means the same thing to everyone; a late call still resolves the period before it while that
one is overdue. Hard days (the child's death anniversary and birthday, 清明) create a gentle
`hard_day_call` and remove any cheerful task due on that same day.
"""

from __future__ import annotations

import calendar as _gregorian
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.care.birthdays import Birthday, anniversaries_between, birthdays_between
from bot.care.calendar import occurrences_between
from bot.care.policy import Policy
from storage.models import (
    Activity,
    Assessment,
    CaseFile,
    ContactAssignment,
    DeceasedChild,
    HealthReading,
    Household,
    HouseholdMember,
    Person,
    Task,
    Township,
    Visit,
    VisitOutcome,
    VisitPreference,
)

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")
EPOCH = date(2000, 1, 3)  # a Monday: 7-day greeting periods are ISO weeks
CHUNK = 1000  # households per round of queries
PARENTS = ("father", "mother")

WEEKLY_GREETING = "weekly_greeting"
HOLIDAY_GREETING = "holiday_greeting"
HEALTH_SERVICE = "health_service"
BIRTHDAY_VISIT = "birthday_visit"
INTAKE = "intake"
ASSESSMENT = "assessment"
HARD_DAY_CALL = "hard_day_call"
CLASS_INVITATION = "class_invitation"
KINDS = (WEEKLY_GREETING, HOLIDAY_GREETING, HEALTH_SERVICE, BIRTHDAY_VISIT, INTAKE, ASSESSMENT,
         HARD_DAY_CALL, CLASS_INVITATION)
CHEERFUL = frozenset({HOLIDAY_GREETING, BIRTHDAY_VISIT})

UPCOMING, DUE, OVERDUE, DONE, MISSED = "upcoming", "due", "overdue", "done", "missed"
STATUSES = (UPCOMING, DUE, OVERDUE, DONE, MISSED)
_URGENCY = {OVERDUE: 0, DUE: 1, UPCOMING: 2, DONE: 3, MISSED: 4}

# Occasion keys of the hard days (not in the holiday list: nobody greets on them).
QINGMING = "qingming"
DEATH_ANNIVERSARY = "death_anniversary"
CHILD_BIRTHDAY = "child_birthday"
BIRTHDAY = "birthday"  # the visit dialog's occasion value for a birthday visit


@dataclass(frozen=True)
class Window:
    opens: date
    due: date
    closes: date | None  # None: stays overdue until done


def status_of(today: date, window: Window, done: bool) -> str:
    """The one status rule (see the module docstring)."""
    if done:
        return DONE
    if today < window.opens:
        return UPCOMING
    if today <= window.due:
        return DUE
    if window.closes is None or today <= window.closes:
        return OVERDUE
    return MISSED


@dataclass(frozen=True)
class PlannedTask:
    """One task at one instant: what, for whom, when, who is responsible, and where it stands."""

    key: str
    kind: str
    status: str
    opens: date
    due: date
    closes: date | None
    township_id: int
    household_id: int | None = None
    household_code: str | None = None
    member_id: int | None = None
    member_name: str | None = None
    occasion: str | None = None
    volunteer_id: int | None = None
    task_id: int | None = None
    detail: str | None = None

    def overdue_days(self, today: date) -> int:
        return (today - self.due).days if self.status == OVERDUE else 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("opens", "due", "closes"):
            out[name] = out[name].isoformat() if out[name] else None
        return out


# ------------------------------------------------------------------ facts (loaded in bulk)


@dataclass(frozen=True)
class Contact:
    day: date
    kind: str
    occasion: str | None
    member_id: int | None


@dataclass(frozen=True)
class Parent:
    member_id: int
    name: str
    birthday: Birthday | None


@dataclass(frozen=True)
class Child:
    id: int
    birth_date: date | None
    death_date: date | None


@dataclass
class HouseholdFacts:
    id: int
    code: str
    township_id: int
    preference: str
    pace_days: int | None
    start: date
    volunteer_id: int | None = None
    parents: list[Parent] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)
    case_file_on: date | None = None
    last_assessment: date | None = None
    contacts: list[Contact] = field(default_factory=list)
    reading_days: set[date] = field(default_factory=set)
    manual: list[PlannedTask] = field(default_factory=list)


# ------------------------------------------------------------------ pure rules


@dataclass(frozen=True)
class Draft:
    """A task before it is checked against the records: its window and what resolves it."""

    kind: str
    window: Window
    occasion: str | None = None
    member_id: int | None = None
    member_name: str | None = None
    ref: str = "-"  # member or child id in the key
    visit_kinds: tuple[str, ...] = ()
    need_occasion: str | None = None
    readings_needed: int = 0  # health service: readings on this many days since count_from
    count_from: date | None = None


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, _gregorian.monthrange(year, month)[1]))


def greeting_every(h: HouseholdFacts, policy: Policy) -> int:
    """A household's greeting period: weekly; slower for a paced family; rarely after a refusal."""
    if h.preference == VisitPreference.REFUSED:
        return policy.refused_greeting_every_days
    if h.preference == VisitPreference.PACED:
        return h.pace_days or policy.paced_greeting_every_days
    return policy.greeting_every_days


def greeting_drafts(h: HouseholdFacts, today: date, policy: Policy) -> list[Draft]:
    return _greetings(greeting_every(h, policy), today, policy)


def _greetings(every: int, today: date, policy: Policy) -> list[Draft]:
    grace = every - 1  # a late call still resolves the last period until the next one ends
    first = ((today - timedelta(days=policy.lookback_days + grace)) - EPOCH).days // every
    last = (today - EPOCH).days // every
    out = []
    for k in range(first, last + 1):
        opens = EPOCH + timedelta(days=k * every)
        due = opens + timedelta(days=every - 1)
        out.append(Draft(WEEKLY_GREETING, Window(opens, due, due + timedelta(days=grace)),
                         visit_kinds=policy.greeting_kinds))
    return out


def holiday_drafts(today: date, policy: Policy) -> list[Draft]:
    before, after = policy.holiday_opens_days_before, policy.holiday_closes_days_after
    start = today - timedelta(days=policy.lookback_days + after)
    end = today + timedelta(days=policy.horizon_days + before)
    return [Draft(HOLIDAY_GREETING,
                  Window(o.day - timedelta(days=before), o.day, o.day + timedelta(days=after)),
                  occasion=o.key, visit_kinds=policy.holiday_kinds, need_occasion=o.key)
            for o in occurrences_between(policy.holiday_occasions, start, end)]


def health_drafts(today: date, per_month: int, policy: Policy, start: date) -> list[Draft]:
    """`per_month` services per calendar month, each due at the end of its share of the month.

    In the month a household joins, shares already past do not count against it: the first
    share still ahead needs one reading, the next two, and so on."""
    if per_month < 1:
        return []
    out = []
    month = (today - timedelta(days=policy.lookback_days)).replace(day=1)
    last_month = (today + timedelta(days=policy.horizon_days)).replace(day=1)
    while month <= last_month:
        days = _gregorian.monthrange(month.year, month.month)[1]
        end = month.replace(day=days)
        skipped = 0
        for i in range(1, per_month + 1):
            opens = month + timedelta(days=(i - 1) * days // per_month)
            due = month + timedelta(days=i * days // per_month - 1)
            if due < start:
                skipped += 1
                continue
            out.append(Draft(HEALTH_SERVICE, Window(opens, due, end), ref=str(i),
                             readings_needed=i - skipped, count_from=month))
        month = add_months(month, 1)
    return out


def birthday_drafts(h: HouseholdFacts, today: date, policy: Policy) -> list[Draft]:
    before, after = policy.birthday_opens_days_before, policy.birthday_closes_days_after
    start = today - timedelta(days=policy.lookback_days + after)
    end = today + timedelta(days=policy.horizon_days + before)
    return [Draft(BIRTHDAY_VISIT, Window(d - timedelta(days=before), d, d + timedelta(days=after)),
                  occasion=BIRTHDAY, member_id=p.member_id, member_name=p.name, ref=str(p.member_id),
                  visit_kinds=policy.birthday_kinds, need_occasion=BIRTHDAY)
            for p in h.parents if p.birthday is not None
            for d in birthdays_in(p.birthday, start, end)]


@lru_cache(maxsize=65536)
def birthdays_in(birthday: Birthday, start: date, end: date) -> tuple[date, ...]:
    """Celebrations in a range: many parents share a birthday, and lunar dates cost a conversion."""
    return tuple(birthdays_between(birthday, start, end))


@lru_cache(maxsize=65536)
def _anniversaries(day: date, start: date, end: date) -> tuple[date, ...]:
    return tuple(anniversaries_between(day, start, end))


@lru_cache(maxsize=64)
def _qingming(start: date, end: date) -> tuple[date, ...]:
    return tuple(o.day for o in occurrences_between((QINGMING,), start, end))


def hard_day_drafts(h: HouseholdFacts, today: date, policy: Policy) -> list[Draft]:
    before, after = policy.hard_day_opens_days_before, policy.hard_day_closes_days_after
    start = today - timedelta(days=policy.lookback_days + after)
    end = today + timedelta(days=policy.horizon_days + before)
    days: dict[date, tuple[str, str]] = {}
    for child in h.children:
        if child.death_date:
            for d in _anniversaries(child.death_date, start, end):
                days.setdefault(d, (DEATH_ANNIVERSARY, f"c{child.id}"))
        if child.birth_date:
            for d in _anniversaries(child.birth_date, start, end):
                days.setdefault(d, (CHILD_BIRTHDAY, f"c{child.id}"))
    for day in _qingming(start, end):
        days.setdefault(day, (QINGMING, "-"))
    return [Draft(HARD_DAY_CALL, Window(d - timedelta(days=before), d, d + timedelta(days=after)),
                  occasion=occasion, ref=ref, visit_kinds=policy.hard_day_kinds)
            for d, (occasion, ref) in sorted(days.items())]


def case_drafts(h: HouseholdFacts, policy: Policy) -> list[Draft]:
    """Intake for a household without a file; reassessment N months after the last one."""
    if h.case_file_on is None:
        return [Draft(INTAKE, Window(h.start, h.start + timedelta(days=policy.intake_due_days), None))]
    base = max(h.case_file_on, h.last_assessment or h.case_file_on)
    due = add_months(base, policy.reassessment_months)
    return [Draft(ASSESSMENT, Window(due - timedelta(days=policy.assessment_opens_days_before), due, None))]


def drafts_for(h: HouseholdFacts, today: date, policy: Policy) -> list[Draft]:
    """Every draft for one household, paced by its own wishes."""
    return _drafts(h, today, policy, relevant_only=False)


def _drafts(h: HouseholdFacts, today: date, policy: Policy, *, relevant_only: bool) -> list[Draft]:
    """`drafts_for`, optionally keeping only the drafts `tasks_for` keeps (due since the start,
    relevant today) — the same list in the same order, with the parts every household of the
    same pace and start shares taken from a cache instead of being recomputed."""
    refused = h.preference == VisitPreference.REFUSED
    paced = h.preference == VisitPreference.PACED
    start = h.start if relevant_only else None
    drafts = list(_shared_greetings(greeting_every(h, policy), today, policy, start))
    hard = hard_day_drafts(h, today, policy) if (not refused or policy.hard_day_calls_for_refused) else []
    if not refused:
        per_month = policy.paced_health_services_per_month if paced else policy.health_services_per_month
        drafts += _shared_holidays(today, policy, start)
        drafts += birthday_drafts(h, today, policy)
        drafts += _shared_health(today, per_month, policy, h.start, relevant_only)
        drafts += case_drafts(h, policy)
    if hard:
        hard_days = {d.window.due for d in hard}
        drafts = [d for d in drafts if not (d.kind in CHEERFUL and d.window.due in hard_days)]
        drafts += hard
    if relevant_only:
        horizon, lookback = _bounds(today, policy)
        return [d for d in drafts if not (d.window.due < h.start or d.window.opens > horizon
                                          or (d.window.closes is not None and d.window.closes < lookback))]
    return drafts


@lru_cache(maxsize=64)
def _bounds(today: date, policy: Policy) -> tuple[date, date]:
    """The last day a window may open and the first day it may close to be relevant today."""
    return today + timedelta(days=policy.horizon_days), today - timedelta(days=policy.lookback_days)


def _keep(drafts: Iterable[Draft], today: date, policy: Policy, start: date | None) -> tuple[Draft, ...]:
    if start is None:
        return tuple(drafts)
    return tuple(d for d in drafts if d.window.due >= start and relevant(d.window, today, policy))


@lru_cache(maxsize=4096)
def _shared_greetings(every: int, today: date, policy: Policy, start: date | None) -> tuple[Draft, ...]:
    return _keep(_greetings(every, today, policy), today, policy, start)


@lru_cache(maxsize=4096)
def _shared_holidays(today: date, policy: Policy, start: date | None) -> tuple[Draft, ...]:
    return _keep(holiday_drafts(today, policy), today, policy, start)


@lru_cache(maxsize=4096)
def _shared_health(today: date, per_month: int, policy: Policy, start: date,
                   relevant_only: bool) -> tuple[Draft, ...]:
    return _keep(health_drafts(today, per_month, policy, start), today, policy,
                 start if relevant_only else None)


def is_done(draft: Draft, h: HouseholdFacts, today: date) -> bool:
    if draft.readings_needed:
        assert draft.count_from is not None
        if len(h.reading_days) < draft.readings_needed:
            return False
        end = draft.window.closes or today
        days = {d for d in h.reading_days if draft.count_from <= d <= end}
        return len(days) >= draft.readings_needed
    if not draft.visit_kinds or not h.contacts:  # intake / assessment: resolved by the case file
        return False
    end = draft.window.closes or today
    return any(
        draft.window.opens <= c.day <= end and c.kind in draft.visit_kinds
        and (draft.need_occasion is None or c.occasion == draft.need_occasion)
        and (draft.member_id is None or c.member_id in (None, draft.member_id))
        for c in h.contacts
    )


def relevant(window: Window, today: date, policy: Policy) -> bool:
    if window.opens > today + timedelta(days=policy.horizon_days):
        return False
    return window.closes is None or window.closes >= today - timedelta(days=policy.lookback_days)


def tasks_for(h: HouseholdFacts, today: date, policy: Policy) -> list[PlannedTask]:
    """One household's tasks at `today`, from facts already loaded: a pure function."""
    out = list(h.manual)
    for d in _drafts(h, today, policy, relevant_only=True):
        w = d.window
        out.append(PlannedTask(
            key=f"{d.kind}:{h.id}:{d.ref}:{d.occasion or '-'}:{w.due.isoformat()}",
            kind=d.kind, status=status_of(today, w, is_done(d, h, today)), opens=w.opens,
            due=w.due, closes=w.closes, township_id=h.township_id, household_id=h.id,
            household_code=h.code, member_id=d.member_id, member_name=d.member_name,
            occasion=d.occasion, volunteer_id=h.volunteer_id,
        ))
    return out


def _built(cls: type[Any], fields: dict[str, Any]) -> Any:
    """An instance of a frozen dataclass from a dict holding every one of its fields.

    Why: a frozen dataclass's `__init__` sets each field through `object.__setattr__`, about
    five times slower than this, and loading a chunk's facts builds one per contact, parent and
    child. The instance is the same — equality, hashing, `replace` and `asdict` read the fields
    as usual — but its attribute dict is not the compact shared-key kind (about twice the
    memory), so it is used only for facts, which live for one chunk; the tasks a plan returns
    are built the ordinary way. Callers pass every field.
    """
    instance = object.__new__(cls)
    object.__setattr__(instance, "__dict__", fields)
    return instance


def sort_key(task: PlannedTask) -> tuple[Any, ...]:
    return (_URGENCY[task.status], task.due, task.household_code or "", task.kind, task.key)


# ------------------------------------------------------------------ loading facts (set-based)


def _local_date(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def _utc_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def in_townships(township_id: int | Sequence[int]) -> ColumnElement[bool]:
    """A scope's township condition: one township, or several (the scheduler plans a group at once)."""
    if isinstance(township_id, int):
        return Household.township_id == township_id
    return Household.township_id.in_(list(township_id))


def scope_query(*, volunteer_id: int | None = None, township_id: int | Sequence[int] | None = None,
                household_ids: Sequence[int] | None = None) -> Select[tuple[int]]:
    """The ids of the households a plan covers; every other query is limited to these."""
    query = select(Household.id).where(Household.erased_at.is_(None))
    if township_id is not None:
        query = query.where(in_townships(township_id))
    if household_ids is not None:
        query = query.where(Household.id.in_(list(household_ids)))
    if volunteer_id is not None:
        query = query.where(Household.id.in_(
            select(ContactAssignment.household_id).where(
                ContactAssignment.volunteer_id == volunteer_id, ContactAssignment.ended_on.is_(None))))
    return query.order_by(Household.id)


# The chunk's household ids, bound once per execution (an expanding parameter) rather than
# built into each statement as a thousand literals.
_IDS = bindparam("ids", expanding=True)


@lru_cache(maxsize=65536)
def birthday_of(calendar: str | None, born: date | None, lunar_month: int | None,
                 lunar_day: int | None, lunar_leap: bool | None) -> Birthday | None:
    """`Birthday.of`, once per distinct birthday (a county has far fewer than members)."""
    return Birthday.of(calendar, born, lunar_month, lunar_day, lunar_leap)


@lru_cache(maxsize=256)
def contacts_since(every: int, today: date, policy: Policy) -> date:
    """The earliest day a recorded contact can resolve a task that is relevant today, for a
    household greeted every `every` days: the earliest opening of a relevant window that a
    contact resolves. Older contacts cannot change any status, so they are not loaded."""
    opens = [d.window.opens for d in (*_greetings(every, today, policy), *holiday_drafts(today, policy))
             if relevant(d.window, today, policy)]
    lookback = today - timedelta(days=policy.lookback_days)
    # birthday and hard-day windows: relevant only while they close on or after `lookback`
    opens.append(lookback - timedelta(days=policy.birthday_closes_days_after
                                      + policy.birthday_opens_days_before))
    opens.append(lookback - timedelta(days=policy.hard_day_closes_days_after
                                      + policy.hard_day_opens_days_before))
    return min(opens)


@lru_cache(maxsize=64)
def readings_since(today: date, policy: Policy) -> date:
    """The first day of the earliest month a relevant health service counts readings from."""
    counted = [d.count_from for per_month in {policy.health_services_per_month,
                                              policy.paced_health_services_per_month}
               for d in health_drafts(today, per_month, policy, date.min)
               if d.count_from is not None and relevant(d.window, today, policy)]
    return min(counted, default=today)


def load_facts(session: Session, ids: Sequence[int], today: date, tz: ZoneInfo,
               policy: Policy) -> list[HouseholdFacts]:
    """The facts of a chunk of households, in a fixed number of queries whatever its size."""
    facts: dict[int, HouseholdFacts] = {}
    for hid, code, township, pref, pace, created, enrolled in session.execute(
        select(Household.id, Household.code, Household.township_id, Household.visit_preference,
               Household.visit_pace_days, Household.created_at, Household.enrolled_on)
        .where(Household.id.in_(_IDS)), {"ids": ids}
    ):  # nothing is owed before the household was enrolled (or, without a date, created)
        facts[hid] = HouseholdFacts(hid, code, township, pref, pace, enrolled or _local_date(created, tz))
    for hid, volunteer_id in session.execute(
        select(ContactAssignment.household_id, ContactAssignment.volunteer_id)
        .where(ContactAssignment.household_id.in_(_IDS), ContactAssignment.ended_on.is_(None))
        .order_by(ContactAssignment.started_on, ContactAssignment.id), {"ids": ids}
    ):
        facts[hid].volunteer_id = volunteer_id  # the latest assignment wins
    m = HouseholdMember
    for mid, hid, name, calendar, born, lunar_month, lunar_day, lunar_leap in session.execute(
        select(m.id, m.household_id, Person.name, m.birthday_calendar, m.birth_date,
               m.lunar_birth_month, m.lunar_birth_day, m.lunar_birth_leap)
        .join(Person, Person.id == m.person_id)
        .where(m.household_id.in_(_IDS), m.alive.is_(True), m.relation.in_(PARENTS)).order_by(m.id),
        {"ids": ids}
    ):
        facts[hid].parents.append(_built(Parent, {"member_id": mid, "name": name, "birthday": birthday_of(
            calendar, born, lunar_month, lunar_day, lunar_leap)}))
    for cid, hid, born, died in session.execute(
        select(DeceasedChild.id, DeceasedChild.household_id, DeceasedChild.birth_date,
               DeceasedChild.death_date).where(DeceasedChild.household_id.in_(_IDS))
        .order_by(DeceasedChild.id), {"ids": ids}
    ):
        facts[hid].children.append(_built(Child, {"id": cid, "birth_date": born, "death_date": died}))
    for hid, confirmed in session.execute(
        select(CaseFile.household_id, CaseFile.confirmed_at).where(CaseFile.household_id.in_(_IDS)),
        {"ids": ids}
    ):
        facts[hid].case_file_on = _local_date(confirmed, tz)
    for hid, last in session.execute(
        select(Assessment.household_id, func.max(Assessment.assessed_on))
        .where(Assessment.household_id.in_(_IDS)).group_by(Assessment.household_id), {"ids": ids}
    ):
        facts[hid].last_assessment = last
    # Contacts reach back to the earliest window that can still be relevant today — which
    # depends on the household's greeting period — and readings to the earliest month counted.
    by_every: dict[int, list[int]] = defaultdict(list)
    for f in facts.values():
        by_every[greeting_every(f, policy)].append(f.id)
    for every, group in by_every.items():
        for hid, member_id, day, kind, occasion in session.execute(
            select(Visit.household_id, Visit.member_id, Visit.visited_on, Visit.kind, Visit.occasion)
            .where(Visit.household_id.in_(_IDS), Visit.outcome == VisitOutcome.DONE,
                   Visit.visited_on >= contacts_since(every, today, policy), Visit.visited_on <= today),
            {"ids": group}
        ):
            facts[hid].contacts.append(_built(Contact, {"day": day, "kind": kind, "occasion": occasion,
                                                         "member_id": member_id}))
    for hid, measured in session.execute(
        select(HealthReading.household_id, HealthReading.measured_at)
        .where(HealthReading.household_id.in_(_IDS),
               HealthReading.measured_at >= _utc_start(readings_since(today, policy), tz)), {"ids": ids}
    ):
        facts[hid].reading_days.add(_local_date(measured, tz))
    lookback_start = _utc_start(today - timedelta(days=policy.lookback_days), tz)
    for task in session.scalars(
        select(Task).where(Task.household_id.in_(_IDS))
        .where((Task.done_at.is_(None)) | (Task.done_at >= lookback_start)), {"ids": ids}
    ):
        h = facts[task.household_id]
        h.manual.append(manual_task(task, today, tz, township_id=h.township_id, household_code=h.code,
                                    volunteer_id=h.volunteer_id))
    return [facts[i] for i in ids if i in facts]


def manual_task(task: Task, today: date, tz: ZoneInfo, *, township_id: int, household_code: str,
                volunteer_id: int | None) -> PlannedTask:
    """A task someone created by hand (or another feature did): open from its creation to done.
    Without an assignee it belongs to the household's contact volunteer."""
    due = _local_date(task.due_at, tz)
    window = Window(min(_local_date(task.created_at, tz), due), due, None)
    return PlannedTask(
        key=f"task:{task.id}", kind=task.kind, status=status_of(today, window, task.done_at is not None),
        opens=window.opens, due=due, closes=None, township_id=township_id, household_id=task.household_id,
        household_code=household_code, member_id=task.member_id,
        volunteer_id=task.assignee_id or volunteer_id, task_id=task.id, detail=task.reason)


def class_invitation_tasks(session: Session, today: date, tz: ZoneInfo, policy: Policy,
                           township_id: int | None = None) -> list[PlannedTask]:
    """Each township's monthly class invitation, done by any class activity that month."""
    month = today.replace(day=1)
    end = month.replace(day=_gregorian.monthrange(month.year, month.month)[1])
    window = Window(month, month.replace(day=policy.class_invitation_due_day), end)
    query = select(Township.id)
    if township_id is not None:
        query = query.where(Township.id == township_id)
    townships = list(session.scalars(query.order_by(Township.id)))
    held = set(session.scalars(
        select(func.coalesce(Activity.township_id, 0)).where(
            Activity.type.in_(policy.class_activity_types),
            Activity.status.not_in(("draft", "cancelled")), Activity.cancelled_at.is_(None),
            Activity.starts_at >= _utc_start(month, tz),
            Activity.starts_at < _utc_start(end + timedelta(days=1), tz))
    ))
    return [PlannedTask(
        key=f"{CLASS_INVITATION}:t{t}:-:-:{window.due.isoformat()}", kind=CLASS_INVITATION,
        status=status_of(today, window, t in held or 0 in held), opens=window.opens, due=window.due,
        closes=window.closes, township_id=t,
    ) for t in townships]


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def iter_plan(session: Session, at: datetime, policy: Policy, *, volunteer_id: int | None = None,
              township_id: int | None = None, household_ids: Iterable[int] | None = None,
              tz: ZoneInfo = DEFAULT_TZ, statuses: Collection[str] | None = None,
              ) -> Iterator[list[PlannedTask]]:
    """The plan one chunk of households at a time, so memory stays flat for a whole province.

    The rules run over each chunk at once (bot/care/planner_bulk.py); task objects are built
    only for the tasks kept (`statuses`: only tasks in these statuses)."""
    for batch in iter_batches(session, at, policy, volunteer_id=volunteer_id, township_id=township_id,
                              household_ids=household_ids, tz=tz):
        yield batch.tasks(statuses, volunteer_id)
    if volunteer_id is None and household_ids is None:
        today = _local_date(at, tz)
        yield [t for t in class_invitation_tasks(session, today, tz, policy, township_id)
               if statuses is None or t.status in statuses]


def iter_batches(session: Session, at: datetime, policy: Policy, *, volunteer_id: int | None = None,
                 township_id: int | Sequence[int] | None = None, household_ids: Iterable[int] | None = None,
                 tz: ZoneInfo = DEFAULT_TZ) -> Iterator[Any]:
    """The plan as column batches (`planner_bulk.TaskBatch`), for callers that count."""
    from bot.care.planner_bulk import iter_batches as batches  # it builds on this module's rules

    ids = list(household_ids) if household_ids is not None else None
    yield from batches(session, at, policy, volunteer_id=volunteer_id, township_id=township_id,
                       household_ids=ids, tz=tz)


def iter_plan_per_household(session: Session, at: datetime, policy: Policy, *,
                            volunteer_id: int | None = None, township_id: int | None = None,
                            household_ids: Iterable[int] | None = None, tz: ZoneInfo = DEFAULT_TZ,
                            chunk: int = CHUNK) -> Iterator[list[PlannedTask]]:
    """The reference: facts loaded per chunk, then `tasks_for` one household at a time.

    Slower (a task object per task, rules run per household) but written the way the program
    states its rules; tests require the bulk planner to give exactly this plan."""
    today = _local_date(at, tz)
    ids_filter = list(household_ids) if household_ids is not None else None
    ids = list(session.scalars(scope_query(volunteer_id=volunteer_id, township_id=township_id,
                                           household_ids=ids_filter)))
    for part in _chunks(ids, chunk):
        tasks: list[PlannedTask] = []
        for facts in load_facts(session, part, today, tz, policy):
            tasks.extend(tasks_for(facts, today, policy))
        if volunteer_id is not None:
            tasks = [t for t in tasks if t.volunteer_id == volunteer_id]
        yield tasks
    if volunteer_id is None and ids_filter is None:
        yield class_invitation_tasks(session, today, tz, policy, township_id)


def plan(session: Session, at: datetime, policy: Policy, *, volunteer_id: int | None = None,
         township_id: int | None = None, household_ids: Iterable[int] | None = None,
         tz: ZoneInfo = DEFAULT_TZ) -> list[PlannedTask]:
    """Every task at instant `at` in the given scope (all households when no filter is given)."""
    tasks = [t for part in iter_plan(session, at, policy, volunteer_id=volunteer_id,
                                     township_id=township_id, household_ids=household_ids, tz=tz)
             for t in part]
    return sorted(tasks, key=sort_key)


async def plan_async(session: AsyncSession, at: datetime, policy: Policy, **scope: Any) -> list[PlannedTask]:
    """The same plan from an async unit of work (dialogs, the scheduler)."""
    return await session.run_sync(lambda s: plan(s, at, policy, **scope))


def by_household(tasks: Iterable[PlannedTask]) -> dict[int | None, list[PlannedTask]]:
    out: dict[int | None, list[PlannedTask]] = defaultdict(list)
    for t in tasks:
        out[t.household_id].append(t)
    return out
