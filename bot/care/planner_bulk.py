"""The planner's rules evaluated per kind over many households at once (arrays, not objects).

Why: a province has hundreds of thousands of households and ~7 tasks each at any instant.
Building a `PlannedTask` per task, per household, in Python costs ~20 µs a task; here each rule
runs once per chunk of households as array arithmetic (numpy), and the facts come from a few
set-based queries that return plain integers (day numbers computed by the database). A chunk of
tasks is a `TaskBatch`: columns of integers. Callers that need task objects (a volunteer's list,
the morning digests) build them only for the rows they keep; callers that count (reports) never
build any.

The rules are the ones written per household in `bot/care/planner.py` (`tasks_for` and the draft
functions), which stay the reference: tests/test_planner_bulk.py plans a seeded county both ways
at many instants and requires the same tasks. Change a rule there and here together.

Days are integers counted from 1970-01-01 (numpy's `datetime64[D]`). Timestamps become local
days with the zone's offset at the planning day; for zones without daylight saving (the
program's Asia/Shanghai) that is exact.
"""

from __future__ import annotations

import calendar as _gregorian
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from borax.calendars.lunardate import LunarDate
from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from bot.care import planner as p
from bot.care.birthdays import LUNAR, SOLAR
from bot.care.occasions import NAMES
from bot.care.policy import Policy
from bot.reports.sqlfuncs import epoch_day, epoch_seconds, month_number
from storage.models import (
    Assessment,
    CaseFile,
    ContactAssignment,
    DeceasedChild,
    HealthReading,
    Household,
    HouseholdMember,
    Person,
    Task,
    Visit,
    VisitOutcome,
    VisitPreference,
)

BULK_CHUNK = 25_000  # households per round of queries: arrays of this size stay a few MB
KIND_CODE = {k: i for i, k in enumerate(p.KINDS)}
OCCASIONS: tuple[str, ...] = (*NAMES, p.BIRTHDAY, p.DEATH_ANNIVERSARY, p.CHILD_BIRTHDAY)
OCC_CODE = {k: i for i, k in enumerate(OCCASIONS)}
STATUS_CODE = {s: i for i, s in enumerate(p.STATUSES)}
_UP, _DUE, _OVER, _DONE, _MISSED = (STATUS_CODE[s] for s in (p.UPCOMING, p.DUE, p.OVERDUE, p.DONE, p.MISSED))
NONE = -(1 << 40)  # "no value" in an integer column (far below any id or day number: days before 1970 are negative)
DAY_BITS = 21  # keys pack (owner, day): days since 1970 fit in 21 bits until the year 7711
_EPOCH_DAY = date(1970, 1, 1).toordinal()
# contact kinds, as bits: which rules a contact of that kind can resolve
_G, _H, _B, _D = 1, 2, 4, 8


def day_of(d: date) -> int:
    return d.toordinal() - _EPOCH_DAY


def date_of(n: int) -> date:
    return date.fromordinal(int(n) + _EPOCH_DAY)


# ------------------------------------------------------------------ a chunk of planned tasks


@dataclass
class Labels:
    """What only a task object needs (codes, volunteers, parents' names): loaded on first use."""

    load_codes: Callable[[], dict[int, str]]
    load_volunteers: Callable[[], dict[int, int]]
    load_names: Callable[[list[int]], dict[int, str]]
    _codes: dict[int, str] | None = None
    _volunteers: dict[int, int] | None = None

    def codes(self) -> dict[int, str]:
        if self._codes is None:
            self._codes = self.load_codes()
        return self._codes

    def volunteers(self) -> dict[int, int]:
        if self._volunteers is None:
            self._volunteers = self.load_volunteers()
        return self._volunteers


@dataclass
class TaskBatch:
    """The tasks of one chunk of households, as columns; `tasks()` builds objects on demand."""

    today: date
    hid: np.ndarray  # the chunk's households, in id order (a task's `hh` indexes this)
    township: np.ndarray
    labels: Labels
    hh: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    kind: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ref: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # share, member or child id
    occasion: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    opens: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    due: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    closes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # NONE: open until done
    status: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    member: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    manual: list[p.PlannedTask] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.kind) + len(self.manual)

    def _volunteer_rows(self, volunteer_id: int) -> np.ndarray:
        vols = self.labels.volunteers()
        mine = np.fromiter((vols.get(h) == volunteer_id for h in self.hid.tolist()), bool, len(self.hid))
        return mine[self.hh]

    def counts(self, volunteer_id: int | None = None) -> dict[tuple[str, str], int]:
        """How many tasks of each (kind, status), without building any task."""
        rows = np.ones(len(self.kind), bool) if volunteer_id is None else self._volunteer_rows(volunteer_id)
        out: dict[tuple[str, str], int] = {}
        if rows.any():
            width = len(p.STATUSES)
            values, n = np.unique(self.kind[rows] * width + self.status[rows], return_counts=True)
            for v, c in zip(values.tolist(), n.tolist(), strict=True):
                out[(p.KINDS[v // width], p.STATUSES[v % width])] = c
        for t in self.manual:
            if volunteer_id is None or t.volunteer_id == volunteer_id:
                out[(t.kind, t.status)] = out.get((t.kind, t.status), 0) + 1
        return out

    def tasks(self, statuses: Collection[str] | None = None,
              volunteer_id: int | None = None) -> list[p.PlannedTask]:
        """`PlannedTask` objects for the rows kept (all, or only these statuses / this volunteer)."""
        rows = np.ones(len(self.kind), bool)
        if statuses is not None:
            rows &= np.isin(self.status, [STATUS_CODE[s] for s in statuses])
        if volunteer_id is not None:
            rows &= self._volunteer_rows(volunteer_id)
        out = [t for t in self.manual
               if (statuses is None or t.status in statuses)
               and (volunteer_id is None or t.volunteer_id == volunteer_id)]
        return out + self.tasks_at(np.nonzero(rows)[0])

    def tasks_at(self, index: np.ndarray, *, short_lived: bool = False) -> list[p.PlannedTask]:
        """`PlannedTask` objects for these rows of the columns (manual tasks not included).

        `short_lived`: objects dropped again within the caller's step (a township's digest
        lines) are built without the dataclass's `__init__` (`planner._built`: faster, bigger)."""
        out: list[p.PlannedTask] = []
        if not len(index):
            return out
        spans = np.concatenate([self.opens[index], self.due[index], self.closes[index]])
        day = {n: date_of(n) for n in np.unique(spans[spans != NONE]).tolist()}  # a few hundred days
        day[NONE] = None  # type: ignore[assignment]
        codes, vols = self.labels.codes(), self.labels.volunteers()
        members = self.member[index]
        names = self.labels.load_names(np.unique(members[members != NONE]).tolist())
        hids, townships = self.hid.tolist(), self.township.tolist()
        health, birthday, hard = KIND_CODE[p.HEALTH_SERVICE], KIND_CODE[p.BIRTHDAY_VISIT], KIND_CODE[p.HARD_DAY_CALL]
        cols = zip(self.hh[index].tolist(), self.kind[index].tolist(), self.ref[index].tolist(),
                   self.occasion[index].tolist(), self.opens[index].tolist(), self.due[index].tolist(),
                   self.closes[index].tolist(), self.status[index].tolist(), members.tolist(), strict=True)
        for h, k, ref, occ, opens, due, closes, status, member in cols:
            kind = p.KINDS[k]
            occasion = OCCASIONS[occ] if occ != NONE else None
            if k in (health, birthday):
                ref_text = str(ref)
            elif k == hard and ref != NONE:
                ref_text = f"c{ref}"
            else:
                ref_text = "-"
            due_day = day[due]
            hid = hids[h]
            fields = dict(
                key=f"{kind}:{hid}:{ref_text}:{occasion or '-'}:{due_day.isoformat()}",
                kind=kind, status=p.STATUSES[status], opens=day[opens], due=due_day,
                closes=day[closes], township_id=townships[h],
                household_id=hid, household_code=codes.get(hid),
                member_id=member if member != NONE else None,
                member_name=names.get(member) if member != NONE else None,
                occasion=occasion, volunteer_id=vols.get(hid))
            if short_lived:
                out.append(p._built(p.PlannedTask, {**fields, "task_id": None, "detail": None}))
            else:
                out.append(p.PlannedTask(**fields))  # type: ignore[arg-type]
        return out


# ------------------------------------------------------------------ the chunk's facts


def _matrix(session: Session, query: Any, width: int) -> np.ndarray:
    """The rows of an all-integer query as an (n, width) array, straight from the driver's cursor:
    no row objects, no type processing (every column is an integer computed by the database)."""
    result = session.connection().execute(query)
    try:
        rows = result.cursor.fetchall() if result.cursor is not None else []
    finally:
        result.close()
    if not rows:
        return np.empty((0, width), np.int64)
    return np.array(rows, dtype=np.int64).reshape(len(rows), width)


def _or_none(column: Any) -> Any:
    return func.coalesce(column, NONE)


def _local_days(seconds: np.ndarray, offset_s: int) -> np.ndarray:
    return (seconds + offset_s) // 86400


def _pack(owner: np.ndarray, day: np.ndarray) -> np.ndarray:
    return (owner.astype(np.int64) << DAY_BITS) | day.astype(np.int64)


def _any_between(keys: np.ndarray, owner: np.ndarray, first: Any, last: Any) -> np.ndarray:
    """For each row: does sorted `keys` hold (owner, day) with first <= day <= last?"""
    return _count_between(keys, owner, first, last) > 0


def _count_between(keys: np.ndarray, owner: np.ndarray, first: Any, last: Any) -> np.ndarray:
    if not len(keys) or not len(owner):
        return np.zeros(len(owner), np.int64)
    return np.searchsorted(keys, _pack(owner, np.asarray(last)), "right") \
        - np.searchsorted(keys, _pack(owner, np.asarray(first)), "left")


@dataclass
class _Rows:
    """Task rows being collected for one chunk, one rule at a time."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=lambda: {
        k: [] for k in ("hh", "kind", "ref", "occasion", "opens", "due", "closes", "done", "member")})

    def add(self, hh: np.ndarray, kind: str, opens: Any, due: Any, closes: Any, done: np.ndarray, *,
            ref: Any = NONE, occasion: Any = NONE, member: Any = NONE) -> None:
        n = len(hh)
        if not n:
            return
        for name, value in (("hh", hh), ("kind", KIND_CODE[kind]), ("ref", ref), ("occasion", occasion),
                            ("opens", opens), ("due", due), ("closes", closes), ("done", done),
                            ("member", member)):
            self.parts[name].append(np.broadcast_to(np.asarray(value, dtype=np.int64), (n,)))

    def column(self, name: str) -> np.ndarray:
        parts = self.parts[name]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _statuses(today: int, opens: np.ndarray, due: np.ndarray, closes: np.ndarray, done: np.ndarray) -> np.ndarray:
    """`planner.status_of`, for every row at once."""
    out = np.full(len(due), _MISSED, np.int64)
    out[(closes == NONE) | (today <= closes)] = _OVER
    out[today <= due] = _DUE
    out[today < opens] = _UP
    out[done.astype(bool)] = _DONE
    return out


def _add_months(days: np.ndarray, months: int) -> np.ndarray:
    """`planner.add_months` over an array of day numbers (the day of month clamped)."""
    d64 = days.astype("datetime64[D]")
    month = d64.astype("datetime64[M]")
    day_in_month = (d64 - month.astype("datetime64[D]")).astype(np.int64)
    target = month + np.timedelta64(months, "M")
    first = target.astype("datetime64[D]").astype(np.int64)
    month_len = (target + np.timedelta64(1, "M")).astype("datetime64[D]").astype(np.int64) - first
    return first + np.minimum(day_in_month, month_len - 1)


def _anniversaries(when: np.ndarray, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """`birthdays.anniversaries_between` for many dates: (row index, anniversary day) pairs.
    29 February falls on the 28th in common years; only anniversaries after the date itself."""
    if not len(when):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    d64 = when.astype("datetime64[D]")
    month_of_year = d64.astype("datetime64[M]").astype(np.int64) % 12
    day_in_month = (d64 - d64.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
    rows, days = [], []
    for year in range(date_of(first).year, date_of(last).year + 1):
        dim = day_in_month if _gregorian.isleap(year) else \
            np.where((month_of_year == 1) & (day_in_month == 28), 27, day_in_month)
        month = np.datetime64(f"{year:04d}-01", "M") + month_of_year.astype("timedelta64[M]")
        day = month.astype("datetime64[D]").astype(np.int64) + dim
        keep = (day >= first) & (day <= last) & (day > when)
        rows.append(np.nonzero(keep)[0])
        days.append(day[keep])
    return np.concatenate(rows), np.concatenate(days)


def _months_of(first: date, last: date) -> list[int]:
    """The calendar months (1–12) the days first..last touch: a cheap filter for anniversaries."""
    out, day = set(), first.replace(day=1)
    while day <= last:
        out.add(day.month)
        day = p.add_months(day, 1)
    return sorted(out)


def _lunar_months_of(first: date, last: date) -> list[int]:
    """The lunar month numbers (leap or not) the days first..last fall in."""
    return sorted({LunarDate.from_solar(first + timedelta(days=i)).month
                   for i in range((last - first).days + 1)})


# ------------------------------------------------------------------ planning one chunk


@dataclass(frozen=True)
class _Frame:
    """What every rule of one planning run shares: the day, its bounds and the zone's offset."""

    today: date
    policy: Policy
    tz: ZoneInfo

    @property
    def t(self) -> int:
        return day_of(self.today)

    @property
    def horizon(self) -> int:
        return self.t + self.policy.horizon_days

    @property
    def lookback(self) -> int:
        return self.t - self.policy.lookback_days

    @property
    def offset_s(self) -> int:
        offset = datetime.combine(self.today, time(12), tzinfo=self.tz).utcoffset()
        return int(offset.total_seconds()) if offset else 0


def _scope_conditions(lo: int, hi: int, *, volunteer_id: int | None, township_id: int | None,
                      household_ids: Sequence[int] | None) -> list[ColumnElement[bool]]:
    """The households of one chunk: the plan's scope between two ids (the same as `scope_query`)."""
    conds: list[ColumnElement[bool]] = [Household.id >= lo, Household.id <= hi, Household.erased_at.is_(None)]
    if township_id is not None:
        conds.append(Household.township_id == township_id)
    if household_ids is not None:
        conds.append(Household.id.in_(list(household_ids)))
    if volunteer_id is not None:
        conds.append(Household.id.in_(select(ContactAssignment.household_id).where(
            ContactAssignment.volunteer_id == volunteer_id, ContactAssignment.ended_on.is_(None))))
    return conds


def _labels(session: Session, scope: list[ColumnElement[bool]]) -> Labels:
    def codes() -> dict[int, str]:
        return dict(session.connection().execute(select(Household.id, Household.code).where(*scope)).all())

    def volunteers() -> dict[int, int]:
        return dict(session.connection().execute(  # the latest assignment wins
            select(ContactAssignment.household_id, ContactAssignment.volunteer_id)
            .where(ContactAssignment.household_id.in_(select(Household.id).where(*scope)),
                   ContactAssignment.ended_on.is_(None))
            .order_by(ContactAssignment.started_on, ContactAssignment.id)).all())

    def names(member_ids: list[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for i in range(0, len(member_ids), 1000):
            out.update(session.connection().execute(
                select(HouseholdMember.id, Person.name).join(Person, Person.id == HouseholdMember.person_id)
                .where(HouseholdMember.id.in_(member_ids[i:i + 1000]))).all())
        return out

    return Labels(codes, volunteers, names)


def plan_chunk(session: Session, frame: _Frame, scope: list[ColumnElement[bool]]) -> TaskBatch:
    """Every task of the households matching `scope`, computed rule by rule over the chunk."""
    policy, t, offset = frame.policy, frame.t, frame.offset_s
    horizon, lookback = frame.horizon, frame.lookback
    in_scope = select(Household.id).where(*scope)
    pref_code = case((Household.visit_preference == VisitPreference.REFUSED, 2),
                     (Household.visit_preference == VisitPreference.PACED, 1), else_=0)
    last_assessed = select(func.max(epoch_day(Assessment.assessed_on))).where(
        Assessment.household_id == Household.id).scalar_subquery()
    homes = _matrix(session, select(
        Household.id, Household.township_id, pref_code, func.coalesce(Household.visit_pace_days, 0),
        epoch_seconds(Household.created_at), _or_none(epoch_seconds(CaseFile.confirmed_at)),
        _or_none(last_assessed), _or_none(epoch_day(Household.enrolled_on)))
        .outerjoin(CaseFile, CaseFile.household_id == Household.id).where(*scope).order_by(Household.id), 8)
    hid = homes[:, 0].copy()
    n = len(hid)
    batch = TaskBatch(frame.today, hid, homes[:, 1].copy(), _labels(session, scope))
    # nothing is owed before the household was enrolled (or, without a date, created)
    start = np.where(homes[:, 7] != NONE, homes[:, 7], _local_days(homes[:, 4], offset))
    refused, paced = homes[:, 2] == 2, homes[:, 2] == 1
    pace = homes[:, 3]
    every = np.full(n, policy.greeting_every_days, np.int64)
    every[paced] = np.where(pace[paced] > 0, pace[paced], policy.paced_greeting_every_days)
    every[refused] = policy.refused_greeting_every_days
    case_on = np.where(homes[:, 5] == NONE, NONE, _local_days(homes[:, 5], offset))
    last = homes[:, 6]
    manual = list(session.scalars(select(Task).where(Task.household_id.in_(in_scope)).where(
        (Task.done_at.is_(None))
        | (Task.done_at >= p._utc_start(frame.today - timedelta(days=policy.lookback_days), frame.tz)))))
    del homes
    if not n:
        return batch

    def index_of(column: np.ndarray) -> np.ndarray:
        return np.searchsorted(hid, column)

    # -- contacts (done visits), reaching back as far as a relevant window can, per pace
    since = {e: day_of(p.contacts_since(e, frame.today, policy)) for e in np.unique(every).tolist()}
    since_paced = min((since[e] for e in np.unique(every[paced]).tolist()), default=t)
    wanted = sorted(set(policy.greeting_kinds) | set(policy.holiday_kinds) | set(policy.birthday_kinds)
                    | set(policy.hard_day_kinds))
    bits = case(*[(Visit.kind == k, (_G * (k in policy.greeting_kinds)) | (_H * (k in policy.holiday_kinds))
                   | (_B * (k in policy.birthday_kinds)) | (_D * (k in policy.hard_day_kinds))) for k in wanted],
                else_=0)
    occasion_code = case(*[(Visit.occasion == k, i) for k, i in OCC_CODE.items()], else_=NONE)
    parts = []
    for preference, first_day in ((VisitPreference.REFUSED, since.get(policy.refused_greeting_every_days)),
                                  (VisitPreference.PACED, since_paced),
                                  (None, since.get(policy.greeting_every_days))):
        if first_day is None:
            continue
        group = in_scope.where(Household.visit_preference == preference) if preference else \
            in_scope.where(Household.visit_preference.not_in((VisitPreference.REFUSED, VisitPreference.PACED)))
        # one index seek per household: (household, visited_on >= the pace's first day)
        parts.append(_matrix(session, select(
            Visit.household_id, epoch_day(Visit.visited_on), bits, occasion_code, _or_none(Visit.member_id))
            .where(Visit.household_id.in_(group), Visit.outcome == VisitOutcome.DONE, Visit.kind.in_(wanted),
                   Visit.visited_on <= frame.today, Visit.visited_on >= date_of(first_day)), 5))
    c = np.concatenate(parts)
    c_hh, c_day, c_bits, c_occ, c_member = index_of(c[:, 0]), c[:, 1], c[:, 2], c[:, 3], c[:, 4]

    def keys(mask: np.ndarray, owner: np.ndarray) -> np.ndarray:
        return np.sort(_pack(owner[mask], c_day[mask]))

    greet_keys = keys((c_bits & _G) > 0, c_hh)
    hard_keys = keys((c_bits & _D) > 0, c_hh)
    holiday_keys = keys(((c_bits & _H) > 0) & (c_occ >= 0), c_hh * len(OCCASIONS) + np.maximum(c_occ, 0))
    birthday_mask = ((c_bits & _B) > 0) & (c_occ == OCC_CODE[p.BIRTHDAY])
    birthday_any = keys(birthday_mask & (c_member == NONE), c_hh)
    birthday_member = keys(birthday_mask & (c_member != NONE), c_member)

    rows = _Rows()

    def relevant(opens: int, closes: int | None) -> bool:
        return opens <= horizon and (closes is None or closes >= lookback)

    # -- weekly (or paced) greetings: the same periods for every household of one pace
    for e in np.unique(every).tolist():
        group = np.nonzero(every == e)[0]
        for d in p._greetings(e, frame.today, policy):
            w = d.window
            assert w.closes is not None
            o, du, cl = day_of(w.opens), day_of(w.due), day_of(w.closes)
            if relevant(o, cl):
                hh = group[start[group] <= du]
                rows.add(hh, p.WEEKLY_GREETING, o, du, cl, _any_between(greet_keys, hh, o, cl))

    # -- hard days: each child's death and birth anniversaries, then 清明; the first wins a day
    hd_first = t - policy.lookback_days - policy.hard_day_closes_days_after
    hd_last = t + policy.horizon_days + policy.hard_day_opens_days_before
    months = _months_of(date_of(hd_first), date_of(hd_last))
    ch = _matrix(session, select(
        DeceasedChild.household_id, DeceasedChild.id, _or_none(epoch_day(DeceasedChild.death_date)),
        _or_none(epoch_day(DeceasedChild.birth_date)))
        .where(DeceasedChild.household_id.in_(in_scope),
               or_(month_number(DeceasedChild.death_date).in_(months),
                   month_number(DeceasedChild.birth_date).in_(months)))
        .order_by(DeceasedChild.household_id, DeceasedChild.id), 4)
    ch_hh, ch_id = index_of(ch[:, 0]), ch[:, 1]
    ch_order = np.arange(len(ch), dtype=np.int64)
    cand: list[tuple[np.ndarray, ...]] = []
    for column, occasion, rank in ((2, p.DEATH_ANNIVERSARY, 0), (3, p.CHILD_BIRTHDAY, 1)):
        when = ch[:, column]
        has = np.nonzero(when != NONE)[0]
        rows_i, days = _anniversaries(when[has], hd_first, hd_last)
        idx = has[rows_i]
        cand.append((ch_hh[idx], days, ch_order[idx] * 2 + rank,
                     np.full(len(idx), OCC_CODE[occasion], np.int64), ch_id[idx]))
    everyone = np.arange(n, dtype=np.int64)
    for q in p._qingming(date_of(hd_first), date_of(hd_last)):
        cand.append((everyone, np.full(n, day_of(q), np.int64), np.full(n, 1 << 40, np.int64),
                     np.full(n, OCC_CODE[p.QINGMING], np.int64), np.full(n, NONE, np.int64)))
    hd_hh, hd_day, hd_prio, hd_occ, hd_ref = (np.concatenate([x[i] for x in cand]) for i in range(5))
    calls = np.ones(n, bool) if policy.hard_day_calls_for_refused else ~refused
    order = np.lexsort((hd_prio, hd_day, hd_hh))
    hd_key = _pack(hd_hh, hd_day)[order]
    first = np.ones(len(order), bool)
    first[1:] = hd_key[1:] != hd_key[:-1]
    chosen = order[first]
    hard_set = np.sort(hd_key[first][calls[hd_hh[chosen]]])  # the days that hold cheerful tasks back
    hh, day = hd_hh[chosen], hd_day[chosen]
    before, after = policy.hard_day_opens_days_before, policy.hard_day_closes_days_after
    keep = calls[hh] & (day >= start[hh]) & (day - before <= horizon) & (day + after >= lookback)
    hh, day = hh[keep], day[keep]
    rows.add(hh, p.HARD_DAY_CALL, day - before, day, day + after,
             _any_between(hard_keys, hh, day - before, day + after),
             ref=hd_ref[chosen][keep], occasion=hd_occ[chosen][keep])

    def not_hard(hh: np.ndarray, day: Any) -> np.ndarray:
        if not len(hard_set) or not len(hh):
            return np.ones(len(hh), bool)
        k = _pack(hh, np.asarray(day))
        at = np.minimum(np.searchsorted(hard_set, k), len(hard_set) - 1)
        return hard_set[at] != k

    cared = np.nonzero(~refused)[0]
    # -- holidays
    for d in p.holiday_drafts(frame.today, policy):
        w = d.window
        assert w.closes is not None and d.occasion is not None
        o, du, cl = day_of(w.opens), day_of(w.due), day_of(w.closes)
        if relevant(o, cl):
            hh = cared[start[cared] <= du]
            hh = hh[not_hard(hh, du)]
            code = OCC_CODE[d.occasion]
            rows.add(hh, p.HOLIDAY_GREETING, o, du, cl,
                     _any_between(holiday_keys, hh * len(OCCASIONS) + code, o, cl), occasion=code)

    # -- birthdays: each parent's, computed once per distinct birthday (lunar ones cost a conversion)
    m = HouseholdMember
    b_before, b_after = policy.birthday_opens_days_before, policy.birthday_closes_days_after
    b_first = frame.today - timedelta(days=policy.lookback_days + b_after)
    b_last = frame.today + timedelta(days=policy.horizon_days + b_before)
    lunar = m.birthday_calendar == LUNAR
    par = _matrix(session, select(
        m.household_id, m.id, case((lunar, 1), else_=0), _or_none(epoch_day(m.birth_date)),
        func.coalesce(m.lunar_birth_month, 0), func.coalesce(m.lunar_birth_day, 0),
        case((m.lunar_birth_leap.is_(True), 1), else_=0))
        .where(m.household_id.in_(in_scope.where(Household.visit_preference != VisitPreference.REFUSED)),
               m.alive.is_(True), m.relation.in_(p.PARENTS),
               or_(and_(~lunar, month_number(m.birth_date).in_(_months_of(b_first, b_last))),
                   and_(lunar, or_(m.lunar_birth_month.is_(None), m.lunar_birth_month == 0,
                                   m.lunar_birth_month.in_(_lunar_months_of(b_first, b_last)))))), 7)
    if len(par):
        distinct, inverse = np.unique(par[:, 2:], axis=0, return_inverse=True)
        p_rows, p_day = [], []
        for u, (is_lunar, born, month, mday, leap) in enumerate(distinct.tolist()):
            birthday = p.birthday_of(LUNAR if is_lunar else SOLAR, date_of(born) if born != NONE else None,
                                      month or None, mday or None, bool(leap))
            if birthday is not None:
                for d in p.birthdays_in(birthday, b_first, b_last):
                    p_rows.append(u)
                    p_day.append(day_of(d))
        if p_rows:
            # every (parent, celebration) pair: parents grouped by their distinct birthday
            by_u = np.argsort(inverse.ravel(), kind="stable")
            bounds = np.searchsorted(inverse.ravel()[by_u], np.arange(len(distinct) + 1))
            pick = [by_u[bounds[u]:bounds[u + 1]] for u in p_rows]
            which = np.concatenate(pick)
            day = np.repeat(np.array(p_day, np.int64), [len(x) for x in pick])
            hh, member = index_of(par[which, 0]), par[which, 1]
            keep = (day >= start[hh]) & (day - b_before <= horizon) & (day + b_after >= lookback)
            hh, member, day = hh[keep], member[keep], day[keep]
            keep = not_hard(hh, day)
            hh, member, day = hh[keep], member[keep], day[keep]
            o, cl = day - b_before, day + b_after
            done = _any_between(birthday_any, hh, o, cl) | _any_between(birthday_member, member, o, cl)
            rows.add(hh, p.BIRTHDAY_VISIT, o, day, cl, done, ref=member, occasion=OCC_CODE[p.BIRTHDAY],
                     member=member)

    # -- health services: per calendar month, each share due at the end of its part of the month
    r = _matrix(session, select(HealthReading.household_id, epoch_seconds(HealthReading.measured_at))
                .where(HealthReading.household_id.in_(in_scope), HealthReading.measured_at
                       >= p._utc_start(p.readings_since(frame.today, policy), frame.tz)), 2)
    r_keys = np.unique(_pack(index_of(r[:, 0]), _local_days(r[:, 1], offset)))
    for per_month, group in ((policy.health_services_per_month, cared[~paced[cared]]),
                             (policy.paced_health_services_per_month, cared[paced[cared]])):
        if per_month < 1 or not len(group):
            continue
        month = (frame.today - timedelta(days=policy.lookback_days)).replace(day=1)
        last_month = (frame.today + timedelta(days=policy.horizon_days)).replace(day=1)
        while month <= last_month:
            days = _gregorian.monthrange(month.year, month.month)[1]
            first_day = day_of(month)
            end = first_day + days - 1
            dues = [first_day + i * days // per_month - 1 for i in range(1, per_month + 1)]
            skipped = np.zeros(len(group), np.int64)
            for du in dues:
                skipped += start[group] > du  # shares already past when the household joined
            for i, du in enumerate(dues, start=1):
                o = first_day + (i - 1) * days // per_month
                if relevant(o, end):
                    kept = start[group] <= du
                    hh = group[kept]
                    done = _count_between(r_keys, hh, first_day, end) >= i - skipped[kept]
                    rows.add(hh, p.HEALTH_SERVICE, o, du, end, done, ref=i)
            month = p.add_months(month, 1)

    # -- case work: intake without a case file, else reassessment months after the last one
    intake = cared[case_on[cared] == NONE]
    o, du = start[intake], start[intake] + policy.intake_due_days
    keep = (du >= start[intake]) & (o <= horizon)
    rows.add(intake[keep], p.INTAKE, o[keep], du[keep], NONE, np.zeros(int(keep.sum()), bool))
    filed = cared[case_on[cared] != NONE]
    base = np.maximum(case_on[filed], np.where(last[filed] == NONE, case_on[filed], last[filed]))
    du = _add_months(base, policy.reassessment_months)
    o = du - policy.assessment_opens_days_before
    keep = (du >= start[filed]) & (o <= horizon)
    rows.add(filed[keep], p.ASSESSMENT, o[keep], du[keep], NONE, np.zeros(int(keep.sum()), bool))

    # -- manual tasks (few): built as objects, as the per-household planner does
    if manual:
        labels = _labels(session, [Household.id.in_({task.household_id for task in manual})])
        codes, vols = labels.codes(), labels.volunteers()
        township = dict(zip(hid.tolist(), batch.township.tolist(), strict=True))
        batch.manual = [p.manual_task(task, frame.today, frame.tz, township_id=township[task.household_id],
                                      household_code=codes[task.household_id],
                                      volunteer_id=vols.get(task.household_id)) for task in manual]

    batch.hh, batch.kind, batch.ref = rows.column("hh"), rows.column("kind"), rows.column("ref")
    batch.occasion, batch.member = rows.column("occasion"), rows.column("member")
    batch.opens, batch.due, batch.closes = rows.column("opens"), rows.column("due"), rows.column("closes")
    batch.status = _statuses(t, batch.opens, batch.due, batch.closes, rows.column("done"))
    return batch


def iter_batches(session: Session, at: datetime, policy: Policy, *, volunteer_id: int | None = None,
                 township_id: int | None = None, household_ids: Sequence[int] | None = None,
                 tz: ZoneInfo = p.DEFAULT_TZ, chunk: int = BULK_CHUNK) -> Iterator[TaskBatch]:
    """The plan of a scope as batches of `chunk` households, in household order."""
    frame = _Frame(p._local_date(at, tz), policy, tz)
    ids = list(session.scalars(p.scope_query(volunteer_id=volunteer_id, township_id=township_id,
                                             household_ids=household_ids)))
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        yield plan_chunk(session, frame, _scope_conditions(
            part[0], part[-1], volunteer_id=volunteer_id, township_id=township_id,
            household_ids=household_ids))
