"""The planner written the straightforward way, as the baseline for the planner benchmark.

For each household: its own queries for the household row, its contact volunteer, its
parents, its lost children, its case file and last assessment, its visits, its readings and its
manual tasks — then the same pure rules (`tasks_for`) as the real planner. This is the loop the
design rules out ("never a Python loop over every household"); the benchmark measures how much
the set-based planner gains over it and checks that both give the same plan.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.care.birthdays import Birthday
from bot.care.planner import (
    DEFAULT_TZ,
    PARENTS,
    Child,
    Contact,
    HouseholdFacts,
    Parent,
    PlannedTask,
    Window,
    class_invitation_tasks,
    sort_key,
    status_of,
    tasks_for,
)
from bot.care.policy import Policy
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
)


def _local(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def facts_of(session: Session, household: Household, today: date, tz: ZoneInfo,
             policy: Policy) -> HouseholdFacts:
    """One household's facts, one query per kind of fact, everything it has ever recorded."""
    h = HouseholdFacts(household.id, household.code, household.township_id, household.visit_preference,
                       household.visit_pace_days, _local(household.created_at, tz))
    assignment = session.scalars(
        select(ContactAssignment).where(ContactAssignment.household_id == household.id,
                                        ContactAssignment.ended_on.is_(None))
        .order_by(ContactAssignment.started_on.desc(), ContactAssignment.id.desc()).limit(1)).first()
    h.volunteer_id = assignment.volunteer_id if assignment else None
    for member, name in session.execute(
            select(HouseholdMember, Person.name).join(Person, Person.id == HouseholdMember.person_id)
            .where(HouseholdMember.household_id == household.id, HouseholdMember.alive.is_(True),
                   HouseholdMember.relation.in_(PARENTS)).order_by(HouseholdMember.id)):
        h.parents.append(Parent(member.id, name, Birthday.of(
            member.birthday_calendar, member.birth_date, member.lunar_birth_month,
            member.lunar_birth_day, member.lunar_birth_leap)))
    for child in session.scalars(select(DeceasedChild).where(DeceasedChild.household_id == household.id)):
        h.children.append(Child(child.id, child.birth_date, child.death_date))
    case_file = session.scalar(select(CaseFile).where(CaseFile.household_id == household.id))
    h.case_file_on = _local(case_file.confirmed_at, tz) if case_file and case_file.confirmed_at else None
    h.last_assessment = session.scalar(select(func.max(Assessment.assessed_on)).where(
        Assessment.household_id == household.id))
    for visit in session.scalars(select(Visit).where(Visit.household_id == household.id,
                                                     Visit.outcome == VisitOutcome.DONE)):
        h.contacts.append(Contact(visit.visited_on, visit.kind, visit.occasion, visit.member_id))
    h.reading_days = {_local(r.measured_at, tz) for r in session.scalars(
        select(HealthReading).where(HealthReading.household_id == household.id))}
    done_since = datetime.combine(today - timedelta(days=policy.lookback_days), time(0), tzinfo=tz)
    for task in session.scalars(select(Task).where(Task.household_id == household.id)):
        if task.done_at is not None and task.done_at < done_since:
            continue
        due = _local(task.due_at, tz)
        window = Window(min(_local(task.created_at, tz), due), due, None)
        h.manual.append(PlannedTask(
            key=f"task:{task.id}", kind=task.kind, status=status_of(today, window, task.done_at is not None),
            opens=window.opens, due=due, closes=None, township_id=h.township_id, household_id=h.id,
            household_code=h.code, member_id=task.member_id,
            volunteer_id=task.assignee_id or h.volunteer_id, task_id=task.id, detail=task.reason))
    return h


def plan_per_household(session: Session, at: datetime, policy: Policy, *,
                       household_ids: list[int] | None = None, tz: ZoneInfo = DEFAULT_TZ,
                       ) -> list[PlannedTask]:
    """The whole plan (or that of `household_ids`), one household at a time."""
    today = _local(at, tz)
    query = select(Household).where(Household.erased_at.is_(None)).order_by(Household.id)
    if household_ids is not None:
        query = query.where(Household.id.in_(household_ids))
    tasks: list[PlannedTask] = []
    for household in session.scalars(query).all():
        facts = facts_of(session, household, today, tz, policy)
        tasks.extend(tasks_for(facts, today, policy))
        session.expunge_all()  # a long loop must not keep every row it has seen
    if household_ids is None:
        tasks.extend(class_invitation_tasks(session, today, tz, policy))
    return sorted(tasks, key=sort_key)

