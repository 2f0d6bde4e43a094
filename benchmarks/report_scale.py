"""How long the period report takes as the county grows: seed N households, time each section.

    python benchmarks/report_scale.py [--households 20000] [--db /tmp/report-bench.db]

Seeds fictional households with a quarter of weekly calls, two readings a month, a holiday
visit with money and some danger readings (bulk inserts), then builds the 2026-Q3 report for
the county and for one township and prints the seconds per section. Not a timed test.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from bot.config import load_settings
from bot.reports import figures, money
from bot.reports.build import resolve_scope
from bot.reports.config import ReportConfig
from bot.reports.frame import Frame
from bot.reports.periods import parse_period
from storage.db import Database
from storage.migrate import upgrade
from storage.models import (
    ContactAssignment,
    County,
    HealthReading,
    Household,
    HouseholdMember,
    Person,
    Township,
    Visit,
)

TZ = ZoneInfo("Asia/Shanghai")


def seed(db: Database, n: int) -> None:
    rnd = random.Random(7)
    now = datetime(2026, 11, 20, tzinfo=UTC)
    with db.session() as s:
        county = County(name="基准县")
        s.add(county)
        s.flush()
        towns = [Township(county_id=county.id, name=f"乡镇{i:02d}") for i in range(12)]
        s.add_all(towns)
        s.flush()
        vols = [Person(name=f"志愿者{i}", role="volunteer", township_id=towns[i % 12].id, created_at=now)
                for i in range(max(12, n // 10))]
        s.add_all(vols)
        s.flush()
        s.execute(insert(Household), [
            {"code": f"B{i:07d}", "township_id": towns[i % 12].id, "hardship": i % 3 == 0,
             "visit_preference": "accepts", "created_at": now} for i in range(n)])
        hids = [h for (h,) in s.execute(Household.__table__.select().with_only_columns(Household.id))]
        s.execute(insert(Person), [{"name": f"家属{i}", "role": "family", "created_at": now} for i in range(n)])
        pids = [p for (p,) in s.execute(Person.__table__.select().with_only_columns(Person.id)
                                          .where(Person.role == "family"))]
        s.execute(insert(HouseholdMember), [
            {"household_id": h, "person_id": p, "relation": "mother", "birthday_calendar": "solar",
             "birth_date": date(1950, 1 + i % 12, 1 + i % 28), "alive": True, "lunar_birth_leap": False}
            for i, (h, p) in enumerate(zip(hids, pids, strict=True))])
        s.execute(insert(ContactAssignment), [
            {"household_id": h, "volunteer_id": vols[(i % 12) + 12 * ((i // 12) % (len(vols) // 12))].id,
             "started_on": date(2025, 1, 1)}
            for i, h in enumerate(hids)])  # ten households per volunteer, all in the volunteer's township
        visits, readings = [], []
        for h in hids:
            for week in range(13):
                if rnd.random() < 0.7:
                    day = date(2026, 6, 29) + timedelta(days=7 * week + rnd.randrange(7))
                    visits.append({"household_id": h, "visited_on": day, "kind": rnd.choice(("phone", "wechat", "home")),
                                   "outcome": "done", "money_fen": 0, "follow_up": False, "source": "bench",
                                   "recorded_at": now})
            visits.append({"household_id": h, "visited_on": date(2026, 9, 25), "kind": "home",
                           "occasion": "mid_autumn", "outcome": "done", "money_fen": 20000,
                           "follow_up": False, "source": "bench", "recorded_at": now})
            for month in (7, 8, 9):
                for d in rnd.sample(range(1, 28), 2):
                    at = datetime(2026, month, d, 2, tzinfo=UTC)
                    readings.append({"household_id": h, "measured_at": at, "systolic": 130, "diastolic": 80,
                                     "danger": rnd.random() < 0.02, "recorded_at": at})
        s.execute(insert(Visit), visits)
        s.execute(insert(HealthReading), readings)
        print(f"seeded {n} households, {len(visits)} visits, {len(readings)} readings")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--households", type=int, default=20000)
    parser.add_argument("--db", default="/tmp/report-bench.db")
    parser.add_argument("--reuse", action="store_true", help="time the database already seeded there")
    args = parser.parse_args()
    path = Path(args.db)
    url = f"sqlite:///{path}"
    db = Database(url)
    if not args.reuse:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        upgrade(url)
        t = time.perf_counter()
        seed(db, args.households)
        print(f"seed: {time.perf_counter() - t:.1f} s")
    settings = load_settings(db=url, env={"WARMLINE_DATA_KEY": "YmVuY2htYXJrLW9ubHkta2V5LWZvci13YXJtbGluZSE="})
    config = ReportConfig.from_settings(settings)
    for township in (None, "乡镇00"):
        with db.session() as s:
            frame = Frame(session=s, period=parse_period("2026-Q3"), as_of=date(2026, 11, 20),
                          scope=resolve_scope(s, township), tz=TZ, config=config)
            total = 0.0
            for make in (*figures.SECTIONS, money.holiday_money):
                t = time.perf_counter()
                make(frame)
                spent = time.perf_counter() - t
                total += spent
                print(f"  {township or 'county'} {make.__name__:<20} {spent:6.2f} s")
            print(f"{township or 'county'}: report {total:.2f} s")


if __name__ == "__main__":
    main()
