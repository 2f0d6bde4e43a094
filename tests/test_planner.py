"""The planner through a simulated year of the demo county, with a fixed clock.

One household (QX001) has a diligent volunteer who records each task on its due day: none of
its tasks may ever be overdue or missed. Another (QX002) is never contacted: its tasks go from
due to overdue to missed. A third (QX003) refused visits and is only paced, never nagged.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.app import App
from bot.care.birthdays import Birthday
from bot.care.planner import (
    DONE,
    DUE,
    MISSED,
    OVERDUE,
    UPCOMING,
    Child,
    HouseholdFacts,
    Parent,
    PlannedTask,
    Window,
    plan,
    status_of,
    tasks_for,
)
from bot.care.policy import Policy
from bot.cli import main
from storage.models import (
    Assessment,
    CaseFile,
    HealthReading,
    Household,
    Task,
    Visit,
    VisitPreference,
)
from tests.conftest import SHANGHAI, TEST_DATA_KEY

POLICY = Policy.default()


@pytest.fixture(autouse=True)
def _data_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI commands read the data key from the environment, as in production."""
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=SHANGHAI)


def hid(session: Session, code: str) -> int:
    value = session.scalar(select(Household.id).where(Household.code == code))
    assert value is not None
    return value


def tasks_of(app: App, day: date, code: str) -> list[PlannedTask]:
    with app.db.session() as session:
        return plan(session, at(day), POLICY, household_ids=[hid(session, code)], tz=SHANGHAI)


def record(session: Session, task: PlannedTask, day: date) -> None:
    """What the volunteer records to resolve `task` on `day`."""
    assert task.household_id is not None
    h = task.household_id
    if task.kind == "health_service":
        session.add(HealthReading(household_id=h, measured_at=at(day, 10), systolic=130, diastolic=80))
    elif task.kind == "intake":
        session.add(CaseFile(household_id=h, confirmed_at=at(day, 11)))
    elif task.kind == "assessment":
        session.add(Assessment(household_id=h, assessed_on=day, grief_trauma=3, healing=3,
                               acceptance=3, future_attitude=3))
    else:
        kind = {"birthday_visit": "home", "holiday_greeting": "card"}.get(task.kind, "phone")
        occasion = task.occasion if task.kind in ("holiday_greeting", "birthday_visit") else None
        session.add(Visit(household_id=h, volunteer_id=task.volunteer_id, visited_on=day,
                          kind=kind, occasion=occasion, recorded_at=at(day, 12)))


def test_status_rule() -> None:
    window = Window(date(2026, 12, 1), date(2026, 12, 10), date(2026, 12, 15))
    assert status_of(date(2026, 11, 30), window, False) == UPCOMING
    assert status_of(date(2026, 12, 1), window, False) == DUE
    assert status_of(date(2026, 12, 10), window, False) == DUE
    assert status_of(date(2026, 12, 11), window, False) == OVERDUE
    assert status_of(date(2026, 12, 16), window, False) == MISSED
    assert status_of(date(2026, 12, 16), window, True) == DONE
    assert status_of(date(2030, 1, 1), Window(window.opens, window.due, None), False) == OVERDUE


def test_weekly_greeting_is_resolved_by_a_phone_call_in_its_week(county: App) -> None:
    monday = date(2026, 11, 23)
    [week] = [t for t in tasks_of(county, monday, "QX002") if t.kind == "weekly_greeting" and t.status == DUE]
    assert (week.opens, week.due) == (monday, date(2026, 11, 29))
    with county.db.session() as session:
        session.add(Visit(household_id=hid(session, "QX002"), visited_on=date(2026, 11, 25),
                          kind="phone", recorded_at=at(date(2026, 11, 25))))
    statuses = {t.due: t.status for t in tasks_of(county, date(2026, 11, 26), "QX002")
                if t.kind == "weekly_greeting"}
    assert statuses[date(2026, 11, 29)] == DONE
    # The next week is due on its own; without a call it becomes overdue, then missed.
    assert {t.due: t.status for t in tasks_of(county, date(2026, 12, 2), "QX002")
            if t.kind == "weekly_greeting"}[date(2026, 12, 6)] == DUE
    assert {t.due: t.status for t in tasks_of(county, date(2026, 12, 8), "QX002")
            if t.kind == "weekly_greeting"}[date(2026, 12, 6)] == OVERDUE
    assert {t.due: t.status for t in tasks_of(county, date(2026, 12, 14), "QX002")
            if t.kind == "weekly_greeting"}[date(2026, 12, 6)] == MISSED


def test_a_late_call_resolves_the_overdue_week_too(county: App) -> None:
    with county.db.session() as session:
        session.add(Visit(household_id=hid(session, "QX003"), visited_on=date(2026, 12, 1),
                          kind="wechat", recorded_at=at(date(2026, 12, 1))))
    weeks = {t.due: t.status for t in tasks_of(county, date(2026, 12, 1), "QX003")
             if t.kind == "weekly_greeting"}
    assert weeks[date(2026, 11, 29)] == DONE and weeks[date(2026, 12, 6)] == DONE


def test_a_declined_visit_or_a_visit_for_another_occasion_does_not_count(county: App) -> None:
    day = date(2027, 1, 1)
    with county.db.session() as session:
        h = hid(session, "QX002")
        session.add(Visit(household_id=h, visited_on=day, kind="phone", outcome="declined", recorded_at=at(day)))
        session.add(Visit(household_id=h, visited_on=day, kind="home", occasion="laba", recorded_at=at(day)))
    tasks = tasks_of(county, day, "QX002")
    [new_year] = [t for t in tasks if t.occasion == "new_year"]
    assert new_year.status == DUE
    [laba] = [t for t in tasks if t.occasion == "laba"]  # 2027-01-15: two weeks early is too early
    assert laba.status == UPCOMING and laba.opens == date(2027, 1, 10)


def test_health_service_twice_a_calendar_month(county: App) -> None:
    day = date(2026, 12, 3)
    health = [t for t in tasks_of(county, day, "QX001") if t.kind == "health_service" and t.due.month == 12]
    assert {t.due: t.status for t in health} == {date(2026, 12, 15): DUE, date(2026, 12, 31): UPCOMING}
    with county.db.session() as session:
        h = hid(session, "QX001")
        # two readings on one day are one service
        session.add(HealthReading(household_id=h, measured_at=at(day, 9), systolic=150, diastolic=90))
        session.add(HealthReading(household_id=h, measured_at=at(day, 10), systolic=140, diastolic=85))
    health = [t for t in tasks_of(county, date(2026, 12, 20), "QX001")
              if t.kind == "health_service" and t.due.month == 12]
    assert {t.due: t.status for t in health} == {date(2026, 12, 15): DONE, date(2026, 12, 31): DUE}


def test_manual_tasks_from_other_features_are_included(county: App) -> None:
    with county.db.session() as session:
        task = Task(household_id=hid(session, "QX001"), kind="insurance_expiring", reason="意外险 12-31 到期",
                    due_at=at(date(2026, 12, 1)), created_at=at(date(2026, 11, 20)))
        session.add(task)
        session.flush()
        task_id = task.id
    [manual] = [t for t in tasks_of(county, date(2026, 12, 3), "QX001") if t.task_id == task_id]
    assert manual.status == OVERDUE and manual.volunteer_id is not None and manual.kind == "insurance_expiring"
    with county.db.session() as session:
        session.execute(update(Task).where(Task.id == task_id).values(done_at=at(date(2026, 12, 4))))
    assert [t.status for t in tasks_of(county, date(2026, 12, 5), "QX001") if t.task_id == task_id] == [DONE]
    assert [t for t in tasks_of(county, date(2027, 1, 5), "QX001") if t.task_id == task_id] == []


def test_a_hard_day_replaces_cheerful_tasks_with_a_gentle_call() -> None:
    """The mother's birthday falls on the child's death anniversary: no birthday visit, a call."""
    facts = HouseholdFacts(
        id=1, code="T1", township_id=1, preference=VisitPreference.ACCEPTS, pace_days=None,
        start=date(2020, 1, 1), volunteer_id=7,
        parents=[Parent(11, "某阿姨", Birthday("solar", date(1950, 3, 2)))],
        children=[Child(5, date(1980, 6, 1), date(2015, 3, 2))],
        case_file_on=date(2026, 1, 1),
    )
    tasks = tasks_for(facts, date(2027, 3, 2), POLICY)
    kinds = Counter(t.kind for t in tasks)
    assert kinds["birthday_visit"] == 0
    [call] = [t for t in tasks if t.kind == "hard_day_call" and t.due == date(2027, 3, 2)]
    assert call.occasion == "death_anniversary" and call.status == DUE and call.volunteer_id == 7
    # On another year the birthday is a cheerful day again only if it is not a hard day
    facts.children[0] = Child(5, date(1980, 6, 1), date(2015, 3, 3))
    assert any(t.kind == "birthday_visit" for t in tasks_for(facts, date(2027, 3, 2), POLICY))


def test_simulated_year(county: App) -> None:
    with county.db.session() as session:
        session.execute(update(Household).where(Household.code == "QX003")
                        .values(visit_preference=VisitPreference.REFUSED))
    start = date(2026, 11, 21)
    seen: dict[str, Counter[tuple[str, str]]] = {"QX001": Counter(), "QX002": Counter(), "QX003": Counter()}
    hard_days_qx002: set[tuple[str | None, date]] = set()
    qx001_resolved: set[str] = set()
    refused_dues: set[date] = set()
    for offset in range(366):
        day = start + timedelta(days=offset)
        with county.db.session() as session:
            ids = {code: hid(session, code) for code in seen}
            tasks = plan(session, at(day), POLICY, household_ids=list(ids.values()), tz=SHANGHAI)
            for task in tasks:
                code = task.household_code or ""
                seen[code][(task.kind, task.status)] += 1
                if code == "QX001":
                    assert task.status not in (OVERDUE, MISSED), (day, task)
                    if task.status == DUE and task.due == day:
                        record(session, task, day)
                        qx001_resolved.add(task.key)
                if code == "QX003":
                    refused_dues.add(task.due)
                if code == "QX002" and task.kind == "hard_day_call":
                    hard_days_qx002.add((task.occasion, task.due))
    # Every kind of task came due for the diligent household and was resolved by its record.
    done_kinds = {kind for kind, status in seen["QX001"] if status == DONE}
    assert done_kinds >= {"weekly_greeting", "holiday_greeting", "health_service", "birthday_visit",
                          "hard_day_call"}
    resolved_kinds = {key.split(":")[0] for key in qx001_resolved}
    assert {"intake", "assessment"} <= resolved_kinds  # the file, then a reassessment 6 months on
    holidays = {k.split(":")[3] for k in qx001_resolved if k.startswith("holiday_greeting")}
    assert len(holidays) >= POLICY.holiday_min_per_year
    # The neglected household: tasks pass from due to overdue to missed; its hard days are planned.
    neglected = seen["QX002"]
    assert neglected[("weekly_greeting", MISSED)] > 0 and neglected[("holiday_greeting", MISSED)] > 0
    assert neglected[("health_service", MISSED)] > 0 and neglected[("intake", OVERDUE)] > 0
    assert ("death_anniversary", date(2027, 3, 2)) in hard_days_qx002  # 陈晓红 died 2015-03-02
    assert ("child_birthday", date(2027, 2, 9)) in hard_days_qx002
    assert ("qingming", date(2027, 4, 5)) in hard_days_qx002
    # The household that refused visits is paced down: a quarterly greeting, nothing else.
    refused_kinds = {kind for kind, _ in seen["QX003"]}
    assert refused_kinds == {"weekly_greeting"}
    dues = sorted(refused_dues)
    assert 4 <= len(dues) <= 6 and {(b - a).days for a, b in pairwise(dues)} == {90}


def test_paced_household_is_greeted_at_its_own_pace(county: App) -> None:
    with county.db.session() as session:
        session.execute(update(Household).where(Household.code == "BY002")
                        .values(visit_preference=VisitPreference.PACED, visit_pace_days=21))
    [greeting] = [t for t in tasks_of(county, date(2026, 12, 1), "BY002")
                  if t.kind == "weekly_greeting" and t.status == DUE]
    assert (greeting.due - greeting.opens).days == 20
    health = [t for t in tasks_of(county, date(2026, 12, 1), "BY002") if t.kind == "health_service"]
    assert len({t.due for t in health if t.due.month == 12}) == 1


def test_volunteer_scope_and_the_due_command(county: App, capsys: pytest.CaptureFixture[str]) -> None:
    with county.db.session() as session:
        mine = plan(session, at(date(2026, 11, 23)), POLICY, volunteer_id=1, tz=SHANGHAI)
    assert {t.household_code for t in mine} == {"QX001", "QX002", "QX003"}
    assert main(["--db", county.settings.database_url, "due", "--at", "2026-11-23T09:00+08:00",
                 "--volunteer", "10000000001", "--status", "overdue", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["status"] for r in rows} == {"overdue"}
    assert {r["household_code"] for r in rows} == {"QX002", "QX003"}  # QX001 was called on 11-17
    assert rows[0]["title"] == "每周问候" and rows[0]["volunteer"] == "林晓燕"
    assert main(["--db", county.settings.database_url, "due", "--volunteer", "123"]) == 2


async def test_the_family_card_service_lists_a_households_tasks(county: App) -> None:
    async with county.db.async_session() as session:
        household = await session.scalar(select(Household).where(Household.code == "QX002"))
        assert household is not None
        views = await county.services.tasks.for_household(session, household.id, at(date(2026, 11, 27)))
    titles = {(v.title, v.status) for v in views}
    assert ("生日探访·陈秀珍", DUE) in titles and ("建档走访", DUE) in titles
    assert all(v.household_id == household.id for v in views)


def test_timestamps_are_read_in_the_program_time_zone(county: App) -> None:
    """A reading at 23:30 on 30 November Shanghai time is 15:30 UTC: it counts for November."""
    with county.db.session() as session:
        h = hid(session, "QX004")
        session.add(HealthReading(household_id=h, systolic=120, diastolic=80,
                                  measured_at=datetime(2026, 11, 30, 15, 30, tzinfo=UTC)))
    nov = [t for t in tasks_of(county, date(2026, 11, 30), "QX004") if t.kind == "health_service"]
    assert [t.status for t in nov if t.due == date(2026, 11, 30)] == [DONE]
