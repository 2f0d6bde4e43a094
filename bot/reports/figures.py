"""The service figures of a period report, each a set-based SQL aggregate over recorded data.

Every figure is defined once here, in the section's `definition` text that the report prints
beside it (the README repeats them). Per-household counts are computed in SQL, joined to the
scope's households and grouped in total, by township and by contact volunteer (see `frame`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime, timedelta
from statistics import median
from typing import Any

import numpy as np
from sqlalchemy import (
    Integer,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    union,
)

from bot.care.calendar import occurrences_between
from bot.care.occasions import NAMES
from bot.care.planner import birthday_of, birthdays_in
from bot.reports.frame import LEVEL_COLUMNS, NO_DAY, TOTAL, TOWNSHIP, VOLUNTEER, Frame, Group
from bot.reports.model import Column, Section, Table, pct, ratio
from bot.reports.sqlfuncs import date_literal, day_number, epoch_day, month_key
from storage.models import (
    Activity,
    Assessment,
    CaseFile,
    Consent,
    Greeting,
    HealthReading,
    Household,
    HouseholdMember,
    Invitation,
    OutboxMessage,
    OutboxStatus,
    Person,
    Preference,
    Task,
    Visit,
    VisitOutcome,
)

BIRTHDAY = "birthday"  # the visit dialog's occasion for a birthday visit
PARENTS = ("father", "mother")
FOLLOW_UP_KINDS = ("home", "phone", "wechat")
NOT_HELD = ("draft", "cancelled")  # activity statuses that never took place
KIND_NAMES = {"home": "上门", "phone": "电话", "wechat": "微信", "card": "贺卡/信件",
              "message": "暖心消息", "activity": "活动"}


def kinds_text(kinds: tuple[str, ...]) -> str:
    return "、".join(KIND_NAMES.get(k, k) for k in kinds)


def _n(value: Any) -> int:
    return int(value or 0)


def _rows(table: Table, grouped: list[tuple[Group, dict[str, Any]]], fill: Any) -> Table:
    for group, values in grouped:
        table.add(level=group.level, name=group.name, **fill(values))
    return table


def owed(enrolled: Any, due_days: list[date]) -> Any:
    """How many of `due_days` fall on or after each household's enrolment, summed over the
    households: a household owes nothing before it joined the program (no date: owes all)."""
    if not due_days:
        return literal(0)
    return func.sum(sum((case((or_(enrolled.is_(None), enrolled <= day), 1), else_=0) for day in due_days),
                        literal(0)))


# ------------------------------------------------------------------------------ overview


def served_households(f: Frame) -> Any:
    """Households with any done visit, health reading or attended activity in the elapsed period."""
    end = f.elapsed_end or f.period.start - timedelta(days=1)
    v = f.visits.c
    visits = select(v.household_id).where(v.visited_on >= f.period.start, v.visited_on <= end)
    readings = select(HealthReading.household_id).where(
        f.in_scope(HealthReading.household_id), HealthReading.measured_at >= f.start_instant,
        HealthReading.measured_at < f.instant(end + timedelta(days=1)))
    attended = select(Invitation.household_id).join(Activity, Activity.id == Invitation.activity_id).where(
        Invitation.attended.is_(True), Invitation.household_id.is_not(None),
        Activity.status.not_in(NOT_HELD), Activity.cancelled_at.is_(None),
        Activity.starts_at >= f.start_instant, Activity.starts_at < f.instant(end + timedelta(days=1)))
    u = union(visits, readings, attended).subquery("served_u")
    return select(u.c.household_id.label("household_id"), literal(1).label("served")).subquery("served")


def overview(f: Frame) -> Section:
    d = f.dims
    m = served_households(f)
    grouped = f.grouped({
        "households": func.count(d.c.household_id),
        "hardship": func.sum(case((d.c.hardship.is_(True), 1), else_=0)),
        "paced": func.sum(case((d.c.visit_preference == "paced", 1), else_=0)),
        "refused": func.sum(case((d.c.visit_preference == "refused", 1), else_=0)),
        "served": func.sum(func.coalesce(m.c.served, 0)),
    }, m)
    table = Table("overview", "服务家庭概况", [
        *LEVEL_COLUMNS, Column("households", "在册户数"), Column("hardship", "困难家庭户数"),
        Column("paced", "希望少打扰户数"), Column("refused", "婉拒走访户数"),
        Column("served", "期内服务户数"), Column("served_pct", "服务覆盖率（%）", "pct")])
    _rows(table, grouped, lambda v: {
        "households": _n(v["households"]), "hardship": _n(v["hardship"]), "paced": _n(v["paced"]),
        "refused": _n(v["refused"]), "served": _n(v["served"]),
        "served_pct": pct(_n(v["served"]), _n(v["households"]))})
    return Section("overview", "概况", [table], definition=(
        "在册户数：期末前已纳入项目、期初未注销的家庭（纳入之前的周、月、生日都不算应完成）。期内服务户数：期内（截至报表日）至少有一次已完成的走访/联系、"
        "一条健康数据或一次活动出席记录的家庭。按志愿者分组时，家庭归属于期内最近一次分配的联系人。"))


# ----------------------------------------------------------------------- weekly greetings


def weekly_greetings(f: Frame) -> Section:
    weeks = f.period.complete_weeks(f.as_of)
    d = f.dims
    table = Table("greetings", "每周问候", [
        *LEVEL_COLUMNS, Column("households", "户数"), Column("weeks", "统计周数"),
        Column("expected", "应问候户周"), Column("greeted", "已问候户周"),
        Column("greeted_pct", "问候覆盖率（%）", "pct")])
    greeted_expr: Any = literal(0)
    metrics = None
    if weeks:
        first, last = weeks[0], weeks[-1] + timedelta(days=6)
        origin = date_literal(first)
        seven = literal_column("7")
        v = f.visits.c
        visits = select(
            v.household_id.label("household_id"),
            day_number(v.visited_on, origin).op("/")(seven).label("week"),
        ).where(v.kind.in_(f.config.policy.greeting_kinds), v.visited_on >= first, v.visited_on <= last)
        sent_day = f.day_of(OutboxMessage.sent_at)
        greetings = select(
            Greeting.household_id.label("household_id"),
            day_number(sent_day, origin).op("/")(seven).label("week"),
        ).join(OutboxMessage, OutboxMessage.id == Greeting.outbox_id).where(
            OutboxMessage.status == OutboxStatus.SENT, OutboxMessage.sent_at >= f.instant(first),
            OutboxMessage.sent_at < f.instant(last + timedelta(days=1)))
        u = union(visits, greetings).subquery("greeted_weeks")
        enrolled = Household.enrolled_on
        owed_week = or_(enrolled.is_(None), u.c.week * seven + literal_column("6") >= day_number(enrolled, origin))
        metrics = select(u.c.household_id, func.sum(case((owed_week, 1), else_=0)).label("greeted")).join(
            Household, Household.id == u.c.household_id).group_by(u.c.household_id).subquery("greeted")
        greeted_expr = func.sum(func.coalesce(metrics.c.greeted, 0))
    grouped = f.grouped({"households": func.count(d.c.household_id), "greeted": greeted_expr,
                         "expected": owed(d.c.enrolled_on, [w + timedelta(days=6) for w in weeks])}, metrics)
    _rows(table, grouped, lambda v: {
        "households": _n(v["households"]), "weeks": len(weeks),
        "expected": _n(v["expected"]), "greeted": _n(v["greeted"]),
        "greeted_pct": pct(_n(v["greeted"]), _n(v["expected"]))})
    kinds = kinds_text(f.config.policy.greeting_kinds)
    return Section("greetings", "每周问候", [table], definition=(
        "每周问候覆盖率 = 有问候的户周 ÷ 应问候户周（每户从纳入项目那一周算起的统计周数之和）。"
        "统计周：期内的 ISO 周（周一至周日，"
        "周四落在期内的周属于本期），只算报表日之前已经结束的周。一户一周内有一次已完成的联系"
        f"（方式：{kinds}）或一条已发出的暖心问候，即算已问候。"))


# ----------------------------------------------------------------------- holiday greetings


def holiday_occurrences(f: Frame) -> list[tuple[date, str]]:
    """(day, name) of the program's holidays that fall in the elapsed part of the period."""
    end = f.elapsed_end
    if end is None:
        return []
    return [(o.day, o.name) for o in occurrences_between(f.config.policy.holiday_occasions, f.period.start, end)]


def holidays_in(f: Frame) -> list[str]:
    """The program's holidays that fall in the elapsed part of the period, by date."""
    return [name for _day, name in holiday_occurrences(f)]


def holiday_share(f: Frame, holidays: int) -> float:
    """The yearly minimum, shared out over `holidays` of the program's listed holidays."""
    policy = f.config.policy
    listed = len(set(policy.holiday_occasions))
    return policy.holiday_min_per_year * holidays / listed if listed else 0.0


def holiday_target(f: Frame) -> float:
    """The target of a household enrolled before the period: every holiday of the elapsed period."""
    return holiday_share(f, len(holiday_occurrences(f)))


def holiday_threshold(f: Frame, holidays: int) -> int:
    """Greetings a household owing `holidays` holidays needs to meet its target (rounded up)."""
    return math.ceil(round(holiday_share(f, holidays), 6))


def holiday_greetings(f: Frame) -> Section:
    """Holiday greetings against a target per household: the yearly minimum shared out over the
    holidays of the elapsed period that fall on or after the household's enrolment, so a
    household that joined after the period's holidays owes none (and counts in no rate)."""
    policy = f.config.policy
    d = f.dims
    days = [day for day, _name in holiday_occurrences(f)]
    target = holiday_target(f)
    end = f.elapsed_end
    # per household: how many of the period's holidays it owes, and the greetings that makes
    owed_here = sum((case((or_(d.c.enrolled_on.is_(None), d.c.enrolled_on <= day), 1), else_=0) for day in days),
                    literal(0))
    needs: Any = case(*[(owed_here == k, holiday_threshold(f, k)) for k in range(1, len(days) + 1)],
                      else_=0) if days else literal(0)
    metrics = None
    counted: Any = literal(0)
    if end is not None:
        enrolled = Household.enrolled_on
        v = f.visits.c
        year_of_visit = cast(func.substr(month_key(v.visited_on), 1, 4), Integer)
        visits = select(v.household_id.label("household_id"), v.occasion.label("occasion"),
                        year_of_visit.label("year")).join(Household, Household.id == v.household_id).where(
            v.occasion.in_(policy.holiday_occasions), v.kind.in_(policy.holiday_kinds), v.visited_on >= f.period.start,
            v.visited_on <= end, or_(enrolled.is_(None), v.visited_on >= enrolled))
        greetings = select(Greeting.household_id.label("household_id"), Greeting.occasion.label("occasion"),
                           Greeting.year.label("year")).join(
            OutboxMessage, OutboxMessage.id == Greeting.outbox_id).join(
            Household, Household.id == Greeting.household_id).where(
            OutboxMessage.status == OutboxStatus.SENT, Greeting.occasion.in_(policy.holiday_occasions),
            OutboxMessage.sent_at >= f.start_instant, OutboxMessage.sent_at < f.instant(end + timedelta(days=1)),
            or_(enrolled.is_(None), f.day_of(OutboxMessage.sent_at) >= enrolled))
        u = union(visits, greetings).subquery("holiday_u")
        metrics = select(u.c.household_id, func.count().label("n")).group_by(u.c.household_id).subquery("holidays")
        counted = func.coalesce(metrics.c.n, 0)
    grouped = f.grouped({"households": func.count(d.c.household_id), "greetings": func.sum(counted),
                         "owed": owed(d.c.enrolled_on, days),
                         "owing": func.sum(case((needs > 0, 1), else_=0)),
                         "met": func.sum(case((and_(needs > 0, counted >= needs), 1), else_=0))}, metrics)
    table = Table("holidays", "节日问候", [
        *LEVEL_COLUMNS, Column("households", "户数"), Column("greetings", "节日问候次数"),
        Column("per_household", "户均次数", "float"), Column("target", "折算目标（次/户，户均）", "float"),
        Column("owing", "有目标户数"), Column("met", "达到目标户数"), Column("met_pct", "达标率（%）", "pct")])
    _rows(table, grouped, lambda v: {
        "households": _n(v["households"]), "greetings": _n(v["greetings"]),
        "per_household": ratio(_n(v["greetings"]), _n(v["households"])),
        "target": round(holiday_share(f, _n(v["owed"])) / _n(v["households"]) if _n(v["households"]) else target, 2),
        "owing": _n(v["owing"]), "met": _n(v["met"]) if _n(v["owing"]) else None,
        "met_pct": pct(_n(v["met"]), _n(v["owing"])) if _n(v["owing"]) else None})
    listed = len(set(policy.holiday_occasions))
    return Section("holidays", "节日问候", [table], definition=(
        f"节日问候：一户在一个节日（{'、'.join(NAMES.get(k, k) for k in policy.holiday_occasions)}）"
        f"当年有一次已完成的联系（方式：{kinds_text(policy.holiday_kinds)}，记录了该节日）或一条已发出的节日问候，算一次；"
        f"同一节日多次联系只算一次；纳入项目之前的联系和问候不算。目标每户每年至少 {policy.holiday_min_per_year} 次，"
        f"按期内（截至报表日）、该户纳入项目当天及以后实际有的节日折算：{policy.holiday_min_per_year} × 该户应计节日数 ÷ {listed}"
        f"（本期节日：{'、'.join(holidays_in(f)) or '无'}；期初前已纳入的家庭折算 {target:.2f} 次，"
        f"向上取整为 {holiday_threshold(f, len(days))} 次）。纳入之后期内没有节日的家庭没有目标，不计入达标率。"
        "一户的次数达到本户折算目标（向上取整）即为达标；达标率 = 达到目标户数 ÷ 有目标户数；"
        "各行的折算目标为该行家庭的户均值。"))


# ----------------------------------------------------------------------- health services


def health_services(f: Frame) -> Section:
    policy = f.config.policy
    per_month = policy.health_services_per_month
    d = f.dims
    end = f.elapsed_end
    months = f.period.months(f.as_of)
    complete = f.period.complete_months(f.as_of)
    table = Table("health", "健康服务", [
        *LEVEL_COLUMNS, Column("households", "户数"), Column("service_days", "健康服务次数（天）"),
        Column("per_household_month", "户均每月次数", "float"), Column("target", "目标（次/户/月）"),
        Column("expected_months", "应达标户月"), Column("met_months", "达标户月"),
        Column("met_pct", "户月达标率（%）", "pct")])
    days_expr: Any = literal(0)
    met_expr: Any = literal(0)
    metrics = None
    if end is not None:
        day = f.day_of(HealthReading.measured_at)
        service_days = select(HealthReading.household_id.label("household_id"), day.label("day")).join(
            Household, Household.id == HealthReading.household_id).where(
            f.in_scope(HealthReading.household_id), HealthReading.measured_at >= f.start_instant,
            HealthReading.measured_at < f.instant(end + timedelta(days=1)),
            or_(Household.enrolled_on.is_(None), day >= Household.enrolled_on)).distinct().subquery("sd")
        per_month_q = select(service_days.c.household_id, month_key(service_days.c.day).label("month"),
                             func.count().label("n")).group_by(
            service_days.c.household_id, month_key(service_days.c.day)).subquery("pm")
        enrolled = Household.enrolled_on
        met_month = [and_(per_month_q.c.month == f"{y:04d}-{m:02d}",
                          or_(enrolled.is_(None), enrolled <= date(y, m, 1))) for y, m in complete]
        metrics = select(
            per_month_q.c.household_id,
            func.sum(per_month_q.c.n).label("days"),
            func.sum(case((and_(or_(*met_month) if met_month else literal(False),
                                per_month_q.c.n >= per_month), 1), else_=0)).label("met"),
        ).join(Household, Household.id == per_month_q.c.household_id).group_by(
            per_month_q.c.household_id).subquery("health")
        days_expr = func.sum(func.coalesce(metrics.c.days, 0))
        met_expr = func.sum(func.coalesce(metrics.c.met, 0))
    grouped = f.grouped({"households": func.count(d.c.household_id), "days": days_expr,
                         "met": met_expr,
                         "expected": owed(d.c.enrolled_on, [date(y, m, 1) for y, m in complete])}, metrics)
    household_months = f.household_months()
    for group, v in grouped:
        table.add(level=group.level, name=group.name, households=_n(v["households"]), service_days=_n(v["days"]),
                  per_household_month=ratio(_n(v["days"]), household_months.get((group.level, group.key), 0.0)),
                  target=per_month, expected_months=_n(v["expected"]), met_months=_n(v["met"]),
                  met_pct=pct(_n(v["met"]), _n(v["expected"])))
    return Section("health", "健康服务", [table], definition=(
        "健康服务次数：一户纳入项目以后有健康数据（血压、血糖等）记录的不同日期数，同一天多条只算一次；只有走访而"
        "没有测量记录的不算健康服务。户均每月次数 = 次数 ÷ 在册户月数（每户从纳入项目那天或期初算到报表日，"
        f"不满一月按天数折算；期初前已纳入的家庭本期 {months:.2f} 个月）。目标每户每月 {per_month} 次；户月达标率只统计期内已经结束的整月"
        f"（本期 {len(complete)} 个月），且从一户纳入项目后的第一个整月算起；"
        f"一户一月有 {per_month} 个或以上不同日期即达标。"))


# ----------------------------------------------------------------------- birthday visits


def _parents(f: Frame) -> np.ndarray:
    """The scope's living parents as integer rows: household, lunar (0/1), birth day number,
    lunar month, lunar day, leap (0/1), enrolment day number (a province has a million parents)."""
    m = HouseholdMember
    return f.int_rows(
        select(m.household_id, case((m.birthday_calendar == "lunar", 1), else_=0),
               func.coalesce(epoch_day(m.birth_date), NO_DAY), func.coalesce(m.lunar_birth_month, 0),
               func.coalesce(m.lunar_birth_day, 0), case((m.lunar_birth_leap.is_(True), 1), else_=0),
               func.coalesce(epoch_day(f.dims.c.enrolled_on), NO_DAY))
        .join(f.dims, f.dims.c.household_id == m.household_id)
        .where(m.alive.is_(True), m.relation.in_(PARENTS)), 7)


def birthdays_due(f: Frame, end: date) -> tuple[np.ndarray, np.ndarray]:
    """(household ids, day numbers) of every living parent's birthday in the elapsed period on
    or after the household's enrolment, one entry per birthday. Each distinct birthday is
    computed once (a county's parents share a few thousand), then spread to its parents."""
    parents = _parents(f)
    if not len(parents):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # one integer per distinct birthday (1-D unique sorts far faster than rows)
    born = np.where(parents[:, 2] == NO_DAY, 0, parents[:, 2] + (1 << 24))
    packed = (((born * 2 + parents[:, 1]) * 16 + parents[:, 3]) * 32 + parents[:, 4]) * 2 + parents[:, 5]
    _packed, first_of, which = np.unique(packed, return_index=True, return_inverse=True)
    keys = parents[first_of, 1:6]
    which = which.ravel()
    epoch = date(1970, 1, 1)
    days_of: list[list[int]] = []
    for lunar, born, month, day, leap in keys.tolist():
        birthday = birthday_of("lunar" if lunar else "solar", epoch + timedelta(days=born) if born != NO_DAY else None,
                               month or None, day or None, bool(leap))
        days = birthdays_in(birthday, f.period.start, end) if birthday is not None else ()
        days_of.append([(d - epoch).days for d in days])
    count = np.array([len(d) for d in days_of], dtype=np.int64)
    first = np.concatenate(([0], np.cumsum(count)[:-1]))
    flat = np.array([d for days in days_of for d in days], dtype=np.int64)
    repeat = count[which]  # a parent's entries: one per celebration of their birthday in the period
    parent = np.repeat(np.arange(len(parents)), repeat)
    nth = np.arange(len(parent)) - np.repeat(np.cumsum(repeat) - repeat, repeat)
    due = flat[first[which[parent]] + nth] if len(parent) else np.zeros(0, dtype=np.int64)
    hid = parents[parent, 0]
    kept = due >= parents[parent, 6]  # NO_DAY (no enrolment date) keeps every one
    return hid[kept], due[kept]


def birthday_visits(f: Frame) -> Section:
    """Birthdays are computed per distinct birthday (lunar calendar), spread with arrays."""
    policy = f.config.policy
    end = f.elapsed_end
    hids, due = birthdays_due(f, end) if end is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    before = timedelta(days=policy.birthday_opens_days_before)
    after = timedelta(days=policy.birthday_closes_days_after)
    epoch = date(1970, 1, 1)
    visits: dict[int, list[date]] = defaultdict(list)
    if len(due):
        lo = epoch + timedelta(days=int(due.min())) - before
        hi = epoch + timedelta(days=int(due.max())) + after
        for hid, day in f.session.execute(
            select(f.visits.c.household_id, f.visits.c.visited_on).where(
                f.visits.c.occasion == BIRTHDAY, f.visits.c.kind.in_(policy.birthday_kinds),
                f.visits.c.visited_on >= lo, f.visits.c.visited_on <= hi)):
            visits[hid].append(day)
    done: dict[int, int] = {}
    if visits:  # only households with a birthday visit need matching (few)
        visited = np.isin(hids, np.fromiter(visits, dtype=np.int64))
        birthdays: dict[int, list[date]] = defaultdict(list)
        for hid, day in zip(hids[visited].tolist(), due[visited].tolist(), strict=True):
            birthdays[hid].append(epoch + timedelta(days=day))
        for hid, days in birthdays.items():
            used: set[date] = set()
            for birthday in sorted(days):  # each visit counts for one birthday
                match = next((v for v in sorted(visits[hid]) if v not in used
                              and birthday - before <= v <= birthday + after), None)
                if match is not None:
                    used.add(match)
                    done[hid] = done.get(hid, 0) + 1
    grouped = f.regroup({"due": (hids, None),
                         "done": (np.fromiter(done, dtype=np.int64, count=len(done)),
                                  np.fromiter(done.values(), dtype=np.float64, count=len(done)))})
    table = Table("birthdays", "生日走访", [
        *LEVEL_COLUMNS, Column("due", "应走访（人次）"), Column("done", "已走访（人次）"),
        Column("done_pct", "完成率（%）", "pct")])
    _rows(table, grouped, lambda v: {"due": _n(v["due"]), "done": _n(v["done"]),
                                     "done_pct": pct(v["done"], v["due"])})
    return Section("birthdays", "生日走访", [table], definition=(
        "应走访：期内（截至报表日）、家庭纳入项目之后在世父母的生日（公历或农历，按登记的历法）人次。已走访：生日前 "
        f"{policy.birthday_opens_days_before} 天至后 {policy.birthday_closes_days_after} 天内有一次记录为"
        f"“生日”的已完成走访（方式：{kinds_text(policy.birthday_kinds)}），一次走访只算一个生日。"))


# ----------------------------------------------------------------- case files, assessments


def casework(f: Frame) -> Section:
    d = f.dims
    p = f.period
    filed = select(CaseFile.household_id.label("household_id"), literal(1).label("filed")).where(
        CaseFile.confirmed_at < f.end_instant).subquery("filed")
    ever = select(Assessment.household_id.label("household_id"),
                  func.max(case((and_(Assessment.assessed_on >= p.start, Assessment.assessed_on <= p.end), 1),
                                else_=0)).label("in_period")).where(
        Assessment.assessed_on <= p.end).group_by(Assessment.household_id).subquery("assessed")
    m = select(d.c.household_id, filed.c.filed, ever.c.in_period,
               case((ever.c.household_id.is_not(None), 1), else_=0).label("ever")).select_from(
        d.outerjoin(filed, filed.c.household_id == d.c.household_id)
         .outerjoin(ever, ever.c.household_id == d.c.household_id)).subquery("casework")
    grouped = f.grouped({
        "households": func.count(d.c.household_id),
        "filed": func.sum(func.coalesce(m.c.filed, 0)),
        "assessed_period": func.sum(func.coalesce(m.c.in_period, 0)),
        "assessed_ever": func.sum(func.coalesce(m.c.ever, 0)),
    }, m)
    coverage = Table("casework", "建档与评估覆盖", [
        *LEVEL_COLUMNS, Column("households", "户数"), Column("filed", "已建档户数"),
        Column("filed_pct", "建档率（%）", "pct"), Column("assessed_period", "期内评估户数"),
        Column("assessed_ever", "累计评估户数"), Column("assessed_pct", "评估覆盖率（%）", "pct")])
    _rows(coverage, grouped, lambda v: {
        "households": _n(v["households"]), "filed": _n(v["filed"]),
        "filed_pct": pct(_n(v["filed"]), _n(v["households"])),
        "assessed_period": _n(v["assessed_period"]), "assessed_ever": _n(v["assessed_ever"]),
        "assessed_pct": pct(_n(v["assessed_ever"]), _n(v["households"]))})
    month = month_key(Assessment.assessed_on)
    trend = Table("assessment_trend", "评估得分趋势（按月平均）", [
        Column("month", "月份", "text"), Column("assessments", "评估次数"),
        Column("grief_trauma", "哀伤创伤程度", "float"), Column("healing", "疗愈程度", "float"),
        Column("acceptance", "接纳程度", "float"), Column("future_attitude", "对未来的态度", "float")])
    for row in f.session.execute(
        select(month.label("month"), func.count().label("n"), func.avg(Assessment.grief_trauma),
               func.avg(Assessment.healing), func.avg(Assessment.acceptance),
               func.avg(Assessment.future_attitude))
        .where(Assessment.household_id.in_(f.household_ids()), Assessment.assessed_on >= p.start,
               Assessment.assessed_on <= p.end)
        .group_by(month).order_by(month)):
        trend.add(month=row[0], assessments=_n(row[1]), grief_trauma=round(float(row[2]), 2),
                  healing=round(float(row[3]), 2), acceptance=round(float(row[4]), 2),
                  future_attitude=round(float(row[5]), 2))
    return Section("casework", "建档与评估", [coverage, trend], definition=(
        "已建档：期末前已确认“一户一档”的家庭。期内评估户数：期内做过至少一次评估的家庭；累计评估户数："
        "期末前做过评估的家庭，评估覆盖率 = 累计评估户数 ÷ 户数。得分趋势为期内每月全部评估的平均分"
        "（分值按评估表的刻度），用来看哀伤是否在减轻、接纳与对未来的态度是否在改善。"))


# ----------------------------------------------------------------------- danger readings


def follow_up_times(reading_day: Any) -> tuple[Any, Any]:
    """(next reading, next completed visit or call) after a danger reading, as correlated
    subqueries on `HealthReading`: with `followed_up_at`, the earliest of them is its follow-up.
    The report and the web console's list of readings not yet followed up share this rule."""
    r = HealthReading
    nxt_visit = select(func.min(Visit.recorded_at)).where(
        Visit.household_id == r.household_id, Visit.outcome == VisitOutcome.DONE,
        Visit.kind.in_(FOLLOW_UP_KINDS), Visit.recorded_at > r.measured_at,
        Visit.visited_on >= reading_day,
    ).correlate(r).scalar_subquery()
    # The next reading of the same household: the table again, under another name.
    hr2 = HealthReading.__table__.alias("later")
    nxt_reading = select(func.min(hr2.c.measured_at)).where(
        hr2.c.household_id == r.household_id, hr2.c.measured_at > r.measured_at,
    ).scalar_subquery()
    return nxt_reading, nxt_visit


def danger_readings(f: Frame) -> Section:
    """One row per danger reading (few), with its follow-up found by correlated subqueries."""
    r = HealthReading
    nxt_reading, nxt_visit = follow_up_times(f.day_of(r.measured_at))
    d = f.dims
    rows = f.session.execute(
        select(r.measured_at, r.followed_up_at, nxt_reading, nxt_visit, d.c.township_id, d.c.volunteer_id)
        .join(d, d.c.household_id == r.household_id)
        .where(r.danger.is_(True), r.measured_at >= f.start_instant, r.measured_at < f.end_instant)
    ).all()
    limit = f.config.danger_followup_hours
    now = datetime.combine(f.as_of + timedelta(days=1), datetime.min.time(), tzinfo=f.tz)
    per_group: dict[tuple[str, int | None], dict[str, Any]] = {}

    def bucket(level: str, key: int | None) -> dict[str, Any]:
        return per_group.setdefault((level, key), {"n": 0, "followed": 0, "fast": 0, "hours": []})

    for measured, marked, reading, visit, tid, vid in rows:
        candidates = [t for t in (marked, reading, visit) if t is not None and t >= measured and t < now]
        keys = [(TOTAL, None), (VOLUNTEER, vid)]
        if f.scope.township_id is None:
            keys.append((TOWNSHIP, tid))
        for level, key in keys:
            b = bucket(level, key)
            b["n"] += 1
            if candidates:
                hours = (min(candidates) - measured).total_seconds() / 3600
                b["followed"] += 1
                b["hours"].append(hours)
                b["fast"] += hours <= limit
    bucket(TOTAL, None)
    table = Table("danger", "危险读数及跟进", [
        *LEVEL_COLUMNS, Column("readings", "危险读数条数"), Column("followed", "已跟进"),
        Column("fast", f"{limit:g} 小时内跟进"), Column("fast_pct", f"{limit:g} 小时内跟进率（%）", "pct"),
        Column("not_followed", "尚未跟进"), Column("median_hours", "跟进用时中位数（小时）", "float")])
    names = f.volunteer_names({k for (lvl, k) in per_group if lvl == VOLUNTEER and k})
    ordered = [((TOTAL, None), f.total_group.name)]
    ordered += sorted((((lvl, k), f.township_names.get(k or 0, str(k))) for (lvl, k) in per_group
                       if lvl == TOWNSHIP), key=lambda x: x[1])
    ordered += sorted((((lvl, k), names.get(k, "（未分配联系人）") if k else "（未分配联系人）")
                       for (lvl, k) in per_group if lvl == VOLUNTEER), key=lambda x: (x[0][1] is None, x[1]))
    for (level, key), name in ordered:
        b = per_group[(level, key)]
        table.add(level=level, name=name, readings=b["n"], followed=b["followed"], fast=b["fast"],
                  fast_pct=pct(b["fast"], b["n"]), not_followed=b["n"] - b["followed"],
                  median_hours=round(median(b["hours"]), 1) if b["hours"] else None)
    return Section("danger", "危险读数", [table], definition=(
        "危险读数：期内测量、超过报警阈值的健康数据。跟进时间取以下最早者：标记为已跟进的时间；该户之后的"
        "下一条健康数据；该户之后记录的下一次已完成的上门、电话或微信联系（走访日期不早于读数当天）。"
        f"报表日之后的跟进不计。{limit:g} 小时内跟进率 = {limit:g} 小时内跟进的条数 ÷ 危险读数条数。"))


# ------------------------------------------------------------------------------- activities


def activities(f: Frame) -> Section:
    end = f.elapsed_end
    a = Activity
    held = [a.status.not_in(NOT_HELD), a.cancelled_at.is_(None),
            a.starts_at >= f.start_instant,
            a.starts_at < f.instant((end or f.period.start - timedelta(days=1)) + timedelta(days=1))]
    if f.scope.township_id is not None:
        held.append(or_(a.township_id == f.scope.township_id, a.township_id.is_(None)))
    inv_scope = [Invitation.activity_id == a.id]
    if f.scope.township_id is not None:
        inv_scope.append(Invitation.household_id.in_(f.household_ids()))

    def count(*cond: Any) -> Any:
        return select(func.count()).where(*inv_scope, *cond).correlate(a).scalar_subquery()

    rows = f.session.execute(
        select(a.id, a.starts_at, a.title, a.type, a.township_id, a.cost_fen,
               count(), count(Invitation.rsvp == "yes"), count(Invitation.attended.is_(True)))
        .where(*held).order_by(a.starts_at, a.id)).all()
    listing = Table("activity_list", "期内举办的活动", [
        Column("date", "日期", "text"), Column("title", "活动", "text"), Column("type", "类型", "text"),
        Column("township", "乡镇", "text"), Column("invited", "邀请人数"), Column("yes", "报名人数"),
        Column("attended", "出席人数"), Column("cost", "费用（元）", "yuan")])
    summary: dict[str, dict[str, int]] = {}
    for _id, starts, title, kind, tid, cost, invited, yes, attended in rows:
        town = f.township_names.get(tid, "全县") if tid else "全县"
        listing.add(date=starts.astimezone(f.tz).date().isoformat(), title=title, type=kind,
                    township=town, invited=_n(invited), yes=_n(yes), attended=_n(attended),
                    cost=round(_n(cost) / 100, 2))
        for key in (TOTAL, town):
            s = summary.setdefault(key, {"held": 0, "invited": 0, "yes": 0, "attended": 0, "cost": 0})
            s["held"] += 1
            s["invited"] += _n(invited)
            s["yes"] += _n(yes)
            s["attended"] += _n(attended)
            s["cost"] += _n(cost)
    summary.setdefault(TOTAL, {"held": 0, "invited": 0, "yes": 0, "attended": 0, "cost": 0})
    table = Table("activities", "活动举办与出席", [
        *LEVEL_COLUMNS, Column("held", "举办场次"), Column("invited", "邀请人数"),
        Column("yes", "报名人数"), Column("attended", "出席人数"),
        Column("attended_pct", "出席率（%，出席÷邀请）", "pct"), Column("cost", "活动费用（元）", "yuan")])
    for key in [TOTAL, *sorted(k for k in summary if k != TOTAL)]:
        s = summary[key]
        table.add(level=TOTAL if key == TOTAL else "举办方",
                  name=f.scope.label if key == TOTAL else key, held=s["held"], invited=s["invited"],
                  yes=s["yes"], attended=s["attended"], attended_pct=pct(s["attended"], s["invited"]),
                  cost=round(s["cost"] / 100, 2))
    return Section("activities", "主题活动", [table, listing], definition=(
        "举办场次：期内（截至报表日）开始、未取消的活动（乡镇报表含全县活动）。邀请、报名（回复“参加”）、"
        "出席人数来自活动邀请记录；乡镇报表只计本乡镇家庭的邀请。出席率 = 出席人数 ÷ 邀请人数。"))


# ------------------------------------------------------------------------------- opt-in


def family_opt_in(f: Frame) -> Section:
    end = f.end_instant
    consented = exists().where(
        Consent.person_id == HouseholdMember.person_id, Consent.given_at < end,
        or_(Consent.withdrawn_at.is_(None), Consent.withdrawn_at >= end))
    stopped = exists().where(Preference.person_id == HouseholdMember.person_id,
                             Preference.stopped_at.is_not(None), Preference.stopped_at < end)
    per_member = select(
        HouseholdMember.household_id.label("household_id"),
        case((and_(consented, ~stopped), 1), else_=0).label("opted"),
    ).join(Person, Person.id == HouseholdMember.person_id).where(
        HouseholdMember.alive.is_(True), HouseholdMember.household_id.in_(f.household_ids())).subquery("pm")
    m = select(per_member.c.household_id, func.count().label("members"),
               func.sum(per_member.c.opted).label("opted")).group_by(per_member.c.household_id).subquery("optin")
    d = f.dims
    grouped = f.grouped({
        "households": func.count(d.c.household_id),
        "members": func.sum(func.coalesce(m.c.members, 0)),
        "opted": func.sum(func.coalesce(m.c.opted, 0)),
        "households_opted": func.sum(case((func.coalesce(m.c.opted, 0) > 0, 1), else_=0)),
    }, m)
    table = Table("optin", "家属同意接收消息", [
        *LEVEL_COLUMNS, Column("members", "家庭成员人数"), Column("opted", "同意接收人数"),
        Column("opted_pct", "同意率（%）", "pct"), Column("households", "户数"),
        Column("households_opted", "有成员同意的户数")])
    _rows(table, grouped, lambda v: {
        "members": _n(v["members"]), "opted": _n(v["opted"]),
        "opted_pct": pct(_n(v["opted"]), _n(v["members"])), "households": _n(v["households"]),
        "households_opted": _n(v["households_opted"])})
    return Section("optin", "家属同意", [table], definition=(
        "同意接收人数：期末时有一份未撤回的同意记录、且没有要求停止接收消息的在世家庭成员。"
        "同意率 = 同意接收人数 ÷ 在世家庭成员人数。暖心只给同意的家属发消息。"))


# ------------------------------------------------------------------------------- delivery


DELIVERY_STATUSES = ("queued", "sending", "sent", "failed", "expired")
STATUS_LABELS = {"queued": "排队中", "sending": "发送中", "sent": "已送达", "failed": "失败", "expired": "已过期"}


def delivery(f: Frame) -> Section:
    o = OutboxMessage
    conds = [o.created_at >= f.start_instant, o.created_at < f.end_instant]
    if f.scope.township_id is not None:
        conds.append(o.person_id.in_(select(Person.id).where(Person.township_id == f.scope.township_id)))
    status_cols = [Column(s, STATUS_LABELS[s]) for s in DELIVERY_STATUSES]

    def pivot(key_col: Any, table: Table, label: str) -> None:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(DELIVERY_STATUSES, 0))
        for key, status, n in f.session.execute(
            select(key_col, o.status, func.count()).where(*conds).group_by(key_col, o.status)):
            if status in DELIVERY_STATUSES:
                counts[key][status] += n
        total = dict.fromkeys(DELIVERY_STATUSES, 0)
        for values in counts.values():
            for s in DELIVERY_STATUSES:
                total[s] += values[s]
        for key, values in [("合计", total), *sorted(counts.items())]:
            n = sum(values.values())
            table.add(**{label: key}, **values, total=n,
                      sent_pct=pct(values["sent"], values["sent"] + values["failed"] + values["expired"]))

    by_channel = Table("delivery", "消息发送（按渠道）", [
        Column("channel", "渠道", "text"), *status_cols, Column("total", "合计"),
        Column("sent_pct", "送达率（%）", "pct")])
    pivot(o.channel, by_channel, "channel")
    by_kind = Table("delivery_kind", "消息发送（按类型）", [
        Column("kind", "类型", "text"), *status_cols, Column("total", "合计"),
        Column("sent_pct", "送达率（%）", "pct")])
    pivot(o.kind, by_kind, "kind")
    return Section("delivery", "消息发送", [by_channel, by_kind], definition=(
        "期内写入发件箱的全部消息（回复、提醒、问候、活动邀请等）按当前状态统计；乡镇报表只计发给本乡镇人员的消息。"
        "送达率 = 已送达 ÷（已送达 + 失败 + 已过期），不含仍在排队或发送中的。"))


# ------------------------------------------------------------------------------- tasks


def tasks(f: Frame) -> Section:
    """Manual tasks due in the period (SQL), and the planner's snapshot at the period's end."""
    t = Task
    due_end = min(f.end_instant, f.as_of_instant)
    per_household = select(
        t.household_id.label("household_id"),
        func.count().label("due"),
        func.sum(case((and_(t.done_at.is_not(None), t.done_at <= t.due_at), 1), else_=0)).label("on_time"),
        func.sum(case((and_(t.done_at.is_not(None), t.done_at > t.due_at), 1), else_=0)).label("late"),
        func.sum(case((and_(t.done_at.is_(None), t.due_at < f.as_of_instant), 1), else_=0)).label("overdue"),
    ).where(f.in_scope(t.household_id), t.due_at >= f.start_instant, t.due_at < due_end).group_by(t.household_id).subquery("tasks")
    grouped = f.grouped({k: func.sum(func.coalesce(per_household.c[k], 0))
                         for k in ("due", "on_time", "late", "overdue")}, per_household)
    manual = Table("tasks", "交办任务（期内到期）", [
        *LEVEL_COLUMNS, Column("due", "到期任务数"), Column("on_time", "按时完成"),
        Column("late", "逾期完成"), Column("overdue", "逾期未完成"),
        Column("on_time_pct", "按时完成率（%）", "pct")])
    _rows(manual, grouped, lambda v: {
        "due": _n(v["due"]), "on_time": _n(v["on_time"]), "late": _n(v["late"]),
        "overdue": _n(v["overdue"]), "on_time_pct": pct(_n(v["on_time"]), _n(v["due"]))})
    tables = [manual]
    snapshot = planner_snapshot(f) if f.with_planner else None
    if snapshot is not None:
        tables.append(snapshot)
    return Section("tasks", "任务", tables, definition=(
        "交办任务：期内（截至报表日）到期的人工任务；完成时间不晚于到期时间为按时完成。"
        "服务节奏任务（每周问候、节日问候、健康服务、生日走访）的完成与缺失见各自章节。"
        "“计划任务状态”由排班规则（与每日提醒相同）在期末当天（或报表日）计算：逾期 = 已过到期日、"
        "仍可补做；错过 = 窗口已关闭仍未完成（只回看规则设定的最近几天）。"))


def planner_snapshot(f: Frame) -> Table | None:
    """Overdue and missed tasks by kind, from the planner at the end of the elapsed period."""
    from bot.care import planner
    end = f.elapsed_end
    if end is None:
        return None
    at = datetime.combine(end, datetime.max.time().replace(microsecond=0), tzinfo=f.tz)
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"overdue": 0, "missed": 0, "due": 0})
    for batch in planner.iter_batches(f.session, at, f.config.policy, township_id=f.scope.township_id,
                                      tz=f.tz):  # counted per chunk: no task objects
        for (kind, status), n in batch.counts().items():
            if status in ("overdue", "missed", "due"):
                counts[(kind, "")][status] += n
    for task in planner.class_invitation_tasks(f.session, end, f.tz, f.config.policy, f.scope.township_id):
        if task.status in ("overdue", "missed", "due"):
            counts[(task.kind, "")][task.status] += 1
    table = Table("planned_tasks", f"计划任务状态（{end.isoformat()}）", [
        Column("kind", "任务类型", "text"), Column("due", "待办"), Column("overdue", "逾期"),
        Column("missed", "错过")])
    labels = {"weekly_greeting": "每周问候", "holiday_greeting": "节日问候", "health_service": "健康服务",
              "birthday_visit": "生日走访", "intake": "建档走访", "assessment": "评估",
              "hard_day_call": "难过的日子致电", "class_invitation": "兴趣班邀请"}
    total = {"due": 0, "overdue": 0, "missed": 0}
    rows = []
    for (kind, _), values in sorted(counts.items()):
        rows.append({"kind": labels.get(kind, kind), **values})
        for k in total:
            total[k] += values[k]
    table.add(kind="合计", **total)
    for row in rows:
        table.add(**row)
    return table


SECTIONS = (overview, weekly_greetings, holiday_greetings, health_services, birthday_visits,
            casework, danger_readings, activities, family_opt_in, delivery, tasks)
