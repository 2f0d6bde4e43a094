"""The morning digests routed over columns say exactly what the per-task routing says.

`township_inboxes` (bot/care/digest_routing.py) routes a township's due and overdue tasks as
arrays and builds task objects only for those that can be among a person's first lines; the
reference is `route` + `merge_same` over every task object. On the seeded county of edge cases
(several volunteers sharing many households, unassigned and late tasks, manual tasks, the class
invitation) both must give each person the same first lines, in the same order, and the same
number of lines in all — with room for one line, a few, or the digest's fifteen.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import App
from bot.care.digest_routing import township_inboxes
from bot.care.planner import DUE, OVERDUE, class_invitation_tasks, iter_batches, iter_plan, sort_key
from bot.care.reminders import merge_same, route
from storage.models import HouseholdMember, Person, Role, Township
from tests.conftest import SHANGHAI
from tests.test_planner_bulk import INSTANTS, POLICY, at, seed_random_county


@pytest.fixture
def seeded(county: App) -> App:
    with county.db.session() as session:
        seed_random_county(session, 80)
        # parents who share a birthday: two birthday visits in one household, one line each
        shared = list(session.scalars(select(HouseholdMember).where(
            HouseholdMember.relation.in_(("father", "mother"))).order_by(HouseholdMember.id).limit(40)))
        for member in shared:
            member.alive, member.birthday_calendar, member.birth_date = True, "solar", date(1950, 11, 21)
    return county


def lines(session: Session, day: date, township: int, active: set[int], coordinators: dict[int, list[int]],
          max_lines: int) -> tuple[dict[int, tuple[list[object], int, list[object], int]], ...]:
    tasks = [t for part in iter_plan(session, at(day), POLICY, tz=SHANGHAI, township_id=township,
                                     statuses=(DUE, OVERDUE)) for t in part]
    expected = {}
    for person, inbox in route(tasks, day, POLICY, active, coordinators).items():
        own, escalated = merge_same(inbox.own), merge_same(inbox.escalated)
        expected[person] = (own[:max_lines], len(own), escalated[:max_lines], len(escalated))
    batches = list(iter_batches(session, at(day), POLICY, tz=SHANGHAI, township_id=township))
    objects = [t for b in batches for t in b.manual] + class_invitation_tasks(session, day, SHANGHAI, POLICY, township)
    got = {}
    for person, inbox in township_inboxes(batches, objects, day, POLICY, active, coordinators, max_lines).items():
        own, escalated = merge_same(inbox.own), merge_same(inbox.escalated)
        assert own == sorted(own, key=sort_key)
        got[person] = (own[:max_lines], inbox.own_total or 0, escalated[:max_lines], inbox.escalated_total or 0)
    return expected, got


def test_column_routing_gives_every_person_the_same_lines_as_the_reference(seeded: App) -> None:
    with seeded.db.session() as session:
        townships = list(session.scalars(select(Township.id)))
        people = session.execute(select(Person.id, Person.role, Person.township_id, Person.active)).all()
        # one volunteer stopped: their households' tasks go to the coordinators instead
        volunteers = sorted(pid for pid, role, _t, active in people if role == Role.VOLUNTEER and active)
        active = set(volunteers[1:])
        admins = [pid for pid, role, _t, _a in people if role == Role.ADMIN]
        coordinators = {t: [pid for pid, role, town, _a in people if role == Role.COORDINATOR and town == t]
                        or admins for t in townships}
        busiest = 0
        for day in INSTANTS[::2]:
            for township in townships:
                for max_lines in (1, 3, 15):
                    expected, got = lines(session, day, township, active, coordinators, max_lines)
                    assert got == expected, (day, township, max_lines)
                    busiest = max([busiest, *(n for _o, n, _e, _m in expected.values())])
        assert busiest > 15  # someone had more lines than a digest shows: the cut-off was exercised
