"""A province on PostgreSQL: plan, tick and report as a synthetic province grows to 1M households.

    python benchmarks/province_pg.py [--steps 100000,300000,1000000] [--pg URL] [--keep]

Builds a fictional, seeded province on its own PostgreSQL database (created on the server at
--pg, else WARMLINE_BENCH_PG_URL, else the CI server), in steps: after each step's households
are added it measures, each in a fresh process (so peak RSS is its own):
- plan: the bulk planner over every household (column batches, counted by kind and status);
- tick: `warmline schedule --at 08:05` — every job of one scheduler tick (the morning digests);
- report: the 2026-Q3 province report with the planner snapshot.
The data per household is the shape of benchmarks/synthetic.py (parents, a lost child, a
contact volunteer per 8 households, a year of visits and readings, case files and some tasks),
generated in ranges so a step only adds households. Results are printed as JSON as each step
finishes, so a run stopped early still says how far the curve went. The database is dropped at
the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, insert, text

from benchmarks.common import BENCH_DATA_KEY, START, PgDatabase, postgres_url
from benchmarks.planner_scale import measure
from storage.models import (
    ActionToken,
    Assessment,
    CaseFile,
    ContactAssignment,
    County,
    DeceasedChild,
    HealthReading,
    Household,
    HouseholdMember,
    OutboxMessage,
    Person,
    Task,
    Township,
    Visit,
)

ROOT = Path(__file__).resolve().parent.parent
TOWNSHIPS = 120  # a province: many townships
PER_VOLUNTEER = 8
MAX_HOUSEHOLDS = 2_000_000  # person ids: volunteers first, then two parents per household
BATCH = 20_000  # households per insert round


def _townships(db: Any) -> list[int]:
    with db.session() as s:
        county = County(name="合成省")
        s.add(county)
        s.flush()
        rows = [Township(county_id=county.id, name=f"第{i + 1}镇") for i in range(TOWNSHIPS)]
        s.add_all(rows)
        s.flush()
        return [t.id for t in rows]


def add_households(db: Any, first: int, last: int, townships: list[int], today: date, seed: int = 7) -> None:
    """Households first..last (ids), with everything the planner, digests and reports read."""
    rng = random.Random(seed * 1_000_003 + first)
    now = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    for start in range(first, last + 1, BATCH):
        end = min(last, start + BATCH - 1)
        rows: dict[type, list[dict[str, Any]]] = {m: [] for m in (
            Person, Household, HouseholdMember, DeceasedChild, ContactAssignment, Visit, HealthReading,
            CaseFile, Assessment, Task)}
        for h in range(start, end + 1):
            vol = (h - 1) // PER_VOLUNTEER + 1
            township = townships[(vol - 1) % len(townships)]
            if (h - 1) % PER_VOLUNTEER == 0:
                rows[Person].append({"id": vol, "name": f"志愿者{vol}", "role": "volunteer", "phone": f"1{vol:010d}",
                                     "township_id": township, "created_at": now, "locale": "zh", "active": True})
            preference = "paced" if h % 20 == 7 else "refused" if h % 50 == 11 else "accepts"
            rows[Household].append({"id": h, "code": f"P{h:08d}", "township_id": township, "hardship": h % 5 == 0,
                                    "visit_preference": preference, "visit_pace_days": 14 if h % 40 == 7 else None,
                                    "created_at": now - timedelta(days=20 + h % 500)})
            for k, relation in enumerate(("father", "mother")[: 1 + (h % 3 != 0)]):
                pid = MAX_HOUSEHOLDS // PER_VOLUNTEER + 2 * h + k
                rows[Person].append({"id": pid, "name": f"家长{pid}", "role": "family", "township_id": township,
                                     "created_at": now, "locale": "zh", "active": True})
                rows[HouseholdMember].append({
                    "household_id": h, "person_id": pid, "relation": relation,
                    "birthday_calendar": "lunar" if h % 4 == 0 else "solar",
                    "birth_date": date(1945 + h % 15, 1 + h % 12, 1 + h % 28), "lunar_birth_month": 1 + h % 12,
                    "lunar_birth_day": 1 + h % 29, "lunar_birth_leap": False, "alive": True})
            rows[DeceasedChild].append({"household_id": h, "birth_date": date(1975 + h % 10, 1 + h % 12, 1 + h % 27),
                                        "death_date": date(2005 + h % 15, 1 + (h * 7) % 12, 1 + (h * 3) % 27)})
            rows[ContactAssignment].append({"household_id": h, "volunteer_id": vol,
                                            "started_on": today - timedelta(days=400)})
            for _ in range(12):
                rows[Visit].append({"household_id": h, "volunteer_id": vol,
                                    "kind": rng.choice(("phone", "home", "wechat")),
                                    "visited_on": today - timedelta(days=rng.randint(0, 364)), "outcome": "done",
                                    "money_fen": 0, "follow_up": False, "source": "synthetic", "recorded_at": now})
            for _ in range(6):
                rows[HealthReading].append({"household_id": h, "volunteer_id": vol,
                                            "systolic": rng.randint(110, 190), "diastolic": rng.randint(70, 115),
                                            "danger": False, "recorded_at": now,
                                            "measured_at": now - timedelta(days=rng.randint(0, 364))})
            if h % 3 != 0:
                rows[CaseFile].append({"household_id": h, "member_notes": {},
                                       "confirmed_at": now - timedelta(days=h % 300)})
                if h % 6 == 1:
                    rows[Assessment].append({"household_id": h, "assessed_on": today - timedelta(days=h % 200),
                                             "grief_trauma": 3, "healing": 3, "acceptance": 3, "future_attitude": 3})
            if h % 25 == 0:
                rows[Task].append({"household_id": h, "kind": "follow_up", "reason": "合成",
                                   "due_at": now + timedelta(days=h % 10 - 5), "created_at": now - timedelta(days=10),
                                   "done_at": now - timedelta(days=h % 4) if h % 50 == 0 else None})
        with db.session() as s:
            for model, batch in rows.items():
                if batch:
                    s.execute(insert(model), batch)


def tick(url: str, tree: Path = ROOT) -> dict[str, Any]:
    """`warmline schedule` at 08:05 in its own process, with the code of `tree`: seconds, CPU, peak RSS."""
    wrapper = ("import resource, sys\nfrom bot.cli import main\ncode = main(sys.argv[1:])\n"
               "from benchmarks.common import peak_rss_mb\nprint('MAXRSS_KB', int(peak_rss_mb() * 1024))\n"
               "print('CPU_S', sum(resource.getrusage(resource.RUSAGE_SELF)[:2]))\nsys.exit(code)")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", wrapper, "--db", url, "schedule", "--at", "2026-11-20T08:05+08:00"],
                          env={**os.environ, "WARMLINE_DATA_KEY": BENCH_DATA_KEY, "PYTHONPATH": str(tree)},
                          cwd=tree, capture_output=True, text=True, check=False)
    lines = proc.stdout.splitlines()
    value = {x.split()[0]: float(x.split()[1]) for x in lines if x.startswith(("MAXRSS_KB", "CPU_S"))}
    return {"wall_s": round(time.monotonic() - started, 2), "cpu_s": round(value.get("CPU_S", 0), 2),
            "peak_rss_mb": round(value.get("MAXRSS_KB", 0) / 1024, 1), "exit": proc.returncode,
            "reminders": next((x for x in lines if x.startswith("reminders")), None),
            "stderr": proc.stderr[-500:] if proc.returncode else ""}


def _checkout(revision: str) -> tempfile.TemporaryDirectory[str]:
    """The project's files at `revision`, in a temporary folder (removed with the object)."""
    folder = tempfile.TemporaryDirectory(prefix="wl-baseline-")
    # the repository this file is in, else the one of the current folder (a copy of the tree)
    repo = ROOT if (ROOT / ".git").exists() else Path.cwd()
    archive = subprocess.run(["git", "archive", revision], cwd=repo, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder.name], input=archive, check=True)
    return folder


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100000,300000,1000000")
    parser.add_argument("--pg", help="PostgreSQL server URL (a database is created on it)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--baseline", metavar="REV", help="also tick with the code of this git revision, "
                        "on the same database, for a ratio in the same run")
    args = parser.parse_args(argv)
    baseline = _checkout(args.baseline) if args.baseline else None
    server = args.pg or postgres_url()
    if server is None:
        print(json.dumps({"skipped": "no PostgreSQL server"}))
        return {"skipped": "no PostgreSQL server"}
    pg = PgDatabase.create(server)
    from bot.config import load_settings
    from storage.db import Database

    settings = load_settings(db=pg.url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY})
    db = Database(pg.url, keyring=settings.keyring())
    results: dict[str, Any] = {"database": pg.name, "steps": {}}
    try:
        townships = _townships(db)
        built = 0
        for size in (int(x) for x in args.steps.split(",")):
            started = time.monotonic()
            add_households(db, built + 1, size, townships, START.date())
            with db.session() as s:
                s.execute(text("ANALYZE"))
            step: dict[str, Any] = {"build_s": round(time.monotonic() - started, 1)}
            built = size
            step["plan"] = measure("plan", pg.url)
            with db.session() as s:  # a whole tick each step, not only the newcomers' digests
                s.execute(delete(OutboxMessage))
                s.execute(delete(ActionToken))
            step["tick"] = tick(pg.url)
            if baseline is not None:
                with db.session() as s:
                    s.execute(delete(OutboxMessage))
                    s.execute(delete(ActionToken))
                step["tick_baseline"] = {"revision": args.baseline, **tick(pg.url, Path(baseline.name))}
                if step["tick"]["cpu_s"]:
                    step["tick_cpu_ratio"] = round(step["tick_baseline"]["cpu_s"] / step["tick"]["cpu_s"], 2)
            if not args.no_report:
                step["report"] = measure("report", pg.url)
            results["steps"][size] = step
            print(json.dumps({size: step}, ensure_ascii=False), flush=True)
    finally:
        db.dispose()
        if not args.keep:
            pg.drop()
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
