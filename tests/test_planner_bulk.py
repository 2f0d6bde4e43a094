"""The bulk planner gives exactly the plan of the per-household reference, on a seeded county.

The reference (`iter_plan_per_household`: facts per chunk, then `tasks_for` one household at a
time) is the rules written the way the program states them. The bulk planner evaluates the
same rules per kind over whole chunks (bot/care/planner_bulk.py). A fictional county full of
edge cases — 29 February and lunar leap-month birthdays, children's anniversaries on a parent's
birthday and on 清明, households that joined mid-month, paced and refused families, readings
near midnight, manual tasks — is planned both ways at instants across two years.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import App
from bot.care.planner import iter_batches, iter_plan, iter_plan_per_household, plan, sort_key
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
    Township,
    Visit,
)
from tests.conftest import SHANGHAI

POLICY = Policy.default()
KINDS = ("home", "phone", "wechat", "card", "message", "activity", "letter")
OCCASIONS = (None, None, None, "birthday", "new_year", "spring_festival", "mid_autumn", "laba",
             "national_day", "qingming", "dragon_boat")
SPECIAL_DAYS = (date(1952, 2, 29), date(1950, 12, 31), date(1949, 1, 1), date(1980, 4, 5),
                date(1983, 4, 4), date(2016, 2, 29), date(1990, 3, 2), date(1969, 12, 31))
INSTANTS = (date(2026, 11, 20), date(2026, 12, 31), date(2027, 1, 1), date(2027, 2, 10), date(2027, 2, 27), date(2027, 4, 4),
            date(2027, 6, 1), date(2027, 9, 14), date(2028, 2, 28), date(2028, 3, 1), date(2028, 4, 4))


def seed_random_county(session: Session, households: int, seed: int = 11) -> None:
    """Households of every kind, with a year of fictional records around the instants planned."""
    rng = random.Random(seed)
    townships = list(session.scalars(select(Township.id)))
    volunteers = []
    for i in range(6):
        person = Person(name=f"测试志愿者{i}", role="volunteer", township_id=townships[i % len(townships)])
        session.add(person)
        volunteers.append(person)
    session.flush()
    base = datetime(2026, 11, 20, 10, tzinfo=SHANGHAI)

    def some_day(lo: int, hi: int) -> date:
        return (base + timedelta(days=rng.randint(lo, hi))).date()

    for n in range(households):
        joined = base - timedelta(days=rng.choice((400, 200, 30, 12, 3, 0)) + rng.randint(0, 20),
                                  hours=rng.randint(0, 23))
        if n % 9 == 0:
            joined = base + timedelta(days=rng.randint(1, 500))  # joins after some instants
        preference = rng.choice(("accepts", "accepts", "accepts", "paced", "refused"))
        h = Household(code=f"RB{n:04d}", township_id=rng.choice(townships), visit_preference=preference,
                      visit_pace_days=rng.choice((None, 14, 21)) if preference == "paced" else None,
                      created_at=joined.astimezone(UTC),
                      enrolled_on=rng.choice((None, None, joined.date() + timedelta(days=rng.randint(-60, 60)))))
        session.add(h)
        session.flush()
        members = []
        for relation in rng.sample(("father", "mother", "other"), rng.randint(1, 3)):
            person = Person(name=f"家属{n}{relation}", role="family")
            session.add(person)
            session.flush()
            lunar = rng.random() < 0.4
            born = rng.choice(SPECIAL_DAYS) if rng.random() < 0.3 else date(1945 + rng.randint(0, 20),
                                                                               rng.randint(1, 12), rng.randint(1, 28))
            member = HouseholdMember(
                household_id=h.id, person_id=person.id, relation=relation, alive=rng.random() > 0.1,
                birthday_calendar="lunar" if lunar else "solar", birth_date=born if rng.random() > 0.1 else None,
                lunar_birth_month=rng.randint(1, 12) if lunar and rng.random() > 0.3 else None,
                lunar_birth_day=rng.choice((1, 15, 29, 30)) if lunar else None,
                lunar_birth_leap=lunar and rng.random() < 0.3)
            session.add(member)
            members.append(member)
        session.flush()
        for _ in range(rng.randint(0, 2)):
            session.add(DeceasedChild(
                household_id=h.id,
                birth_date=rng.choice((*SPECIAL_DAYS, None, date(1975 + rng.randint(0, 10), rng.randint(1, 12), 9))),
                death_date=rng.choice((*SPECIAL_DAYS, None, date(2005 + rng.randint(0, 15), rng.randint(1, 12), 20)))))
        for i in range(rng.randint(0, 2)):  # sometimes two open assignments: the latest wins
            session.add(ContactAssignment(household_id=h.id, volunteer_id=rng.choice(volunteers).id,
                                          started_on=some_day(-500, -1) if i == 0 else some_day(-100, 0),
                                          ended_on=some_day(-50, 0) if rng.random() < 0.2 else None))
        if rng.random() < 0.6:
            session.add(CaseFile(household_id=h.id, confirmed_at=(base + timedelta(
                days=rng.randint(-400, 300), hours=rng.randint(0, 23))).astimezone(UTC)))
            for _ in range(rng.randint(0, 2)):
                session.add(Assessment(household_id=h.id, assessed_on=some_day(-300, 300), grief_trauma=3,
                                       healing=3, acceptance=3, future_attitude=3))
        for _ in range(rng.randint(0, 60)):
            session.add(Visit(household_id=h.id, visited_on=some_day(-30, 560), kind=rng.choice(KINDS),
                              occasion=rng.choice(OCCASIONS), outcome="done" if rng.random() > 0.1 else "declined",
                              member_id=rng.choice([None, *(m.id for m in members)]),
                              recorded_at=base.astimezone(UTC)))
        for _ in range(rng.randint(0, 40)):
            measured = datetime.combine(some_day(-30, 560), time(rng.choice((0, 15, 16, 23)), 30), tzinfo=UTC)
            session.add(HealthReading(household_id=h.id, measured_at=measured, systolic=130, diastolic=80))
        for _ in range(rng.randint(0, 2)):
            due = base + timedelta(days=rng.randint(-60, 500))
            session.add(Task(household_id=h.id, kind="follow_up", reason="合成", due_at=due.astimezone(UTC),
                             created_at=(due - timedelta(days=rng.randint(0, 30))).astimezone(UTC),
                             assignee_id=rng.choice([None, volunteers[0].id]),
                             done_at=(due + timedelta(days=rng.randint(-5, 5))).astimezone(UTC)
                             if rng.random() < 0.5 else None))
        if n % 13 == 0:
            h.erased_at = base.astimezone(UTC)


@pytest.fixture
def seeded(county: App) -> App:
    with county.db.session() as session:
        seed_random_county(session, 80)
    return county


def at(day: date) -> datetime:
    return datetime.combine(day, time(9), tzinfo=SHANGHAI)


def reference(session: Session, day: date, **scope: object) -> list[object]:
    return sorted((t for part in iter_plan_per_household(session, at(day), POLICY, tz=SHANGHAI, **scope)  # type: ignore[arg-type]
                   for t in part), key=sort_key)


def test_the_bulk_plan_is_the_reference_plan_at_every_instant(seeded: App) -> None:
    with seeded.db.session() as session:
        for day in INSTANTS:
            expected = reference(session, day)
            got = sorted((t for part in iter_plan(session, at(day), POLICY, tz=SHANGHAI) for t in part),
                         key=sort_key)
            assert len({t.kind for t in expected}) >= 5, day  # the county exercises the rules
            assert got == expected, day


def test_scopes_statuses_and_counts_agree_with_the_reference(seeded: App) -> None:
    day = date(2027, 4, 4)
    with seeded.db.session() as session:
        township = session.scalar(select(Household.township_id).order_by(Household.id))
        volunteer = session.scalar(select(ContactAssignment.volunteer_id).order_by(ContactAssignment.id))
        ids = list(session.scalars(select(Household.id).order_by(Household.id).limit(7)))
        for scope in ({"township_id": township}, {"volunteer_id": volunteer}, {"household_ids": ids}):
            assert plan(session, at(day), POLICY, tz=SHANGHAI, **scope) == reference(session, day, **scope), scope
        due = [t for part in iter_plan(session, at(day), POLICY, tz=SHANGHAI, statuses=("due", "overdue"))
               for t in part]
        whole = reference(session, day)
        assert sorted(due, key=sort_key) == [t for t in whole if t.status in ("due", "overdue")]
        counts: Counter[tuple[str, str]] = Counter()
        for batch in iter_batches(session, at(day), POLICY, tz=SHANGHAI):
            counts.update(batch.counts())
        assert counts == Counter((t.kind, t.status) for t in whole if t.household_id is not None)
