"""Synthetic counties for the benchmarks: N households with parents, a lost child, a contact
volunteer, and a year of visits and readings — bulk-inserted, fictional, reproducible (seeded).

The mix exercises every planner rule: households joined on different days, one in 20 at its
own slower pace and one in 50 that refused visits, lunar birthdays, and — when the database
has a data key (case files hold encrypted fields) — case files, assessments and manual tasks."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert

from storage.db import Database
from storage.models import (
    Assessment,
    CaseFile,
    ContactAssignment,
    County,
    DeceasedChild,
    HealthReading,
    Household,
    HouseholdMember,
    Person,
    Task,
    Township,
    Visit,
)

HOUSEHOLDS_PER_VOLUNTEER = 8
TOWNSHIPS = 12
BATCH = 5_000


def build_county(db: Database, households: int, *, today: date, seed: int = 7,
                 visits_per_household: int = 12, readings_per_household: int = 6) -> None:
    """Fill an empty, migrated database with a county of `households` households."""
    rng = random.Random(seed)
    now = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    with db.session() as s:
        county = County(name=f"合成县{households}")
        s.add(county)
        s.flush()
        townships = [Township(county_id=county.id, name=f"第{i + 1}镇") for i in range(TOWNSHIPS)]
        s.add_all(townships)
        s.flush()
        township_ids = [t.id for t in townships]
    volunteers = max(1, households // HOUSEHOLDS_PER_VOLUNTEER)
    _bulk(db, Person, [{"id": i + 1, "name": f"志愿者{i + 1}", "role": "volunteer",
                        "phone": f"100{i + 1:08d}", "township_id": township_ids[i % TOWNSHIPS],
                        "created_at": now, "locale": "zh", "active": True} for i in range(volunteers)])
    person_id = volunteers
    homes, members, people, children, assignments, visits, readings = [], [], [], [], [], [], []
    files: list[dict] = []
    for h in range(1, households + 1):
        vol = (h - 1) // HOUSEHOLDS_PER_VOLUNTEER % volunteers + 1
        township = township_ids[(vol - 1) % TOWNSHIPS]
        preference = "paced" if h % 20 == 7 else "refused" if h % 50 == 11 else "accepts"
        homes.append({"id": h, "code": f"H{h:07d}", "township_id": township, "hardship": h % 5 == 0,
                      "visit_preference": preference, "visit_pace_days": 14 if h % 40 == 7 else None,
                      "created_at": now - timedelta(days=20 + h % 500)})
        if db.keyring is not None and h % 3 != 0:
            files.append({"kind": "case", "household_id": h, "member_notes": {},
                          "confirmed_at": now - timedelta(days=h % 300)})
            if h % 6 == 1:
                files.append({"kind": "assessment", "household_id": h, "assessed_on": today - timedelta(days=h % 200),
                              "grief_trauma": 3, "healing": 3, "acceptance": 3, "future_attitude": 3})
        if db.keyring is not None and h % 25 == 0:
            files.append({"kind": "task", "household_id": h, "kind_": "follow_up", "reason": "合成",
                          "due_at": now + timedelta(days=h % 10 - 5), "created_at": now - timedelta(days=10),
                          "done_at": now - timedelta(days=h % 4) if h % 50 == 0 else None})
        for relation in ("father", "mother")[: 1 + (h % 3 != 0)]:
            person_id += 1
            people.append({"id": person_id, "name": f"家长{person_id}", "role": "family",
                           "township_id": township, "created_at": now, "locale": "zh", "active": True})
            members.append({"household_id": h, "person_id": person_id, "relation": relation,
                            "birthday_calendar": "lunar" if h % 4 == 0 else "solar",
                            "birth_date": date(1945 + h % 15, 1 + h % 12, 1 + h % 28),
                            "lunar_birth_month": 1 + h % 12, "lunar_birth_day": 1 + h % 29,
                            "lunar_birth_leap": False, "alive": True})
        children.append({"household_id": h, "birth_date": date(1975 + h % 10, 1 + h % 12, 1 + h % 27),
                         "death_date": date(2005 + h % 15, 1 + (h * 7) % 12, 1 + (h * 3) % 27)})
        assignments.append({"household_id": h, "volunteer_id": vol, "started_on": today - timedelta(days=400)})
        for _ in range(visits_per_household):
            visits.append({"household_id": h, "volunteer_id": vol, "kind": rng.choice(("phone", "home", "wechat")),
                           "visited_on": today - timedelta(days=rng.randint(0, 364)), "outcome": "done",
                           "money_fen": 0, "follow_up": False, "source": "synthetic", "recorded_at": now})
        for _ in range(readings_per_household):
            readings.append({"household_id": h, "volunteer_id": vol, "systolic": rng.randint(110, 190),
                             "diastolic": rng.randint(70, 115), "danger": False, "recorded_at": now,
                             "measured_at": now - timedelta(days=rng.randint(0, 364))})
        if len(visits) >= BATCH:
            _flush(db, homes, people, members, children, assignments, visits, readings)
            _flush_files(db, files)
    _flush(db, homes, people, members, children, assignments, visits, readings)
    _flush_files(db, files)


def _flush_files(db: Database, files: list[dict]) -> None:
    """Case files, assessments and manual tasks (after their households exist)."""
    with db.session() as s:
        for row in files:
            kind = row.pop("kind")
            if kind == "case":
                s.add(CaseFile(**row))
            elif kind == "assessment":
                s.add(Assessment(**row))
            else:
                row["kind"] = row.pop("kind_")
                s.add(Task(**row))
    files.clear()


def _flush(db: Database, homes: list, people: list, members: list, children: list,
           assignments: list, visits: list, readings: list) -> None:
    for model, rows in ((Household, homes), (Person, people), (HouseholdMember, members),
                        (DeceasedChild, children), (ContactAssignment, assignments),
                        (Visit, visits), (HealthReading, readings)):
        _bulk(db, model, rows)
        rows.clear()


def _bulk(db: Database, model: type, rows: list[dict]) -> None:
    if not rows:
        return
    with db.session() as s:
        s.execute(insert(model), rows)
