"""Planner scale: every task of a synthetic county at one instant, and a period report, by size.

    python benchmarks/planner_scale.py [--sizes 1000,10000,100000] [--sample 300] [--cache DIR]

For each size a county is built once (benchmarks/synthetic.py; kept in --cache) and each
measurement runs in its own fresh Python process, so its peak memory (VmHWM) is its own:
- plan: every task of every household at 2026-11-20 09:00 (Asia/Shanghai), computed by the bulk
  planner as column batches (`iter_batches`, counted by kind and status: what reports use);
- plan_digest: task objects for the due and overdue tasks only (what the morning digests use);
- plan_objects: `bot.care.planner.plan`, every task as a sorted list of objects;
- previous: the planner before the bulk rules (`iter_plan_per_household`: facts per chunk of
  1,000 households, rules per household), measured in the same run;
- report: the 2026-Q3 county report (`bot.reports.build.build_report`, with the planner);
- baseline: benchmarks/planner_baseline.py, the per-household loop. On the larger counties it
  runs on an evenly spread sample of households and the time is scaled to the whole county
  (it is linear by construction: the same queries for every household); on the smallest
  county it runs in full and its plan is compared with the planner's, task for task.
The plan and baseline measurements alternate per size, so machine load falls on both.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH_DATA_KEY, SHANGHAI, START, fresh_sqlite, peak_rss_mb, rss_of

AT = datetime(2026, 11, 20, 9, 0, tzinfo=SHANGHAI)
GENERATOR_VERSION = 3  # bump when synthetic.py or the schema changes what it builds


def schema_tag() -> str:
    """A short hash of the migrations: a cached county built for another schema is not reused
    (the one migration is regenerated when the models change, so its revision id stays)."""
    versions = Path(__file__).resolve().parent.parent / "storage" / "migrations" / "versions"
    digest = hashlib.sha256()
    for file in sorted(versions.glob("*.py")):
        digest.update(file.read_bytes())
    return digest.hexdigest()[:8]


def county_db(households: int, cache: Path) -> str:
    """The cached county of that size for this schema, built once; concurrent callers (other
    benchmarks running at the same time) wait for the one building it."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"county-{households}-v{GENERATOR_VERSION}-{schema_tag()}.db"
    url = f"sqlite:///{path}"
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists() and not Path(f"{path}.building").exists():
            return url
        Path(f"{path}.building").touch()
        _build(path, url, households)
        Path(f"{path}.building").unlink()
    return url


def _build(path: Path, url: str, households: int) -> None:
    from benchmarks.synthetic import build_county
    from bot.config import load_settings
    from storage.db import Database

    fresh_sqlite(path)
    settings = load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY})
    db = Database(url, keyring=settings.keyring())
    started = time.perf_counter()
    build_county(db, households, today=START.date())
    db.dispose()
    print(f"  built {households} households in {time.perf_counter() - started:.0f} s", file=sys.stderr)


# --------------------------------------------------------- one measurement, in its own process


def _measure(what: str, url: str, sample: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from bot.care.planner import plan
    from bot.care.policy import Policy
    from bot.config import load_settings
    from storage.db import Database
    from storage.models import Household

    settings = load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY})
    db = Database(url, keyring=settings.keyring())
    policy = Policy.from_settings(settings)
    with db.session() as s:
        households = s.scalar(select(func.count()).select_from(Household)) or 0
    rss_before = rss_of(os.getpid())
    wall0, cpu0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"households": households}
    with db.session() as s:
        if what == "plan":  # every task of the county, as column batches (what reports count)
            from bot.care.planner import class_invitation_tasks, iter_batches

            statuses: dict[str, int] = {}
            for batch in iter_batches(s, AT, policy):
                for (_kind, status), n in batch.counts().items():
                    statuses[status] = statuses.get(status, 0) + n
            for task in class_invitation_tasks(s, AT.date(), AT.tzinfo, policy):  # type: ignore[arg-type]
                statuses[task.status] = statuses.get(task.status, 0) + 1
            out["tasks"] = sum(statuses.values())
            out["statuses"] = statuses
        elif what == "plan_digest":  # objects for the due and overdue tasks only (the digests)
            from bot.care.planner import iter_plan

            out["tasks"] = sum(len(part) for part in iter_plan(s, AT, policy, statuses=("due", "overdue")))
        elif what == "plan_objects":  # `plan()`: every task as an object, sorted
            out["tasks"] = len(plan(s, AT, policy))
        elif what == "previous":  # the planner before the bulk rules: per household, per chunk
            from bot.care.planner import iter_plan_per_household

            out["tasks"] = sum(len(part) for part in iter_plan_per_household(s, AT, policy))
        elif what == "baseline":
            from benchmarks.planner_baseline import plan_per_household

            step = max(1, households // sample) if sample else 1
            ids = list(range(1, households + 1, step))
            tasks = plan_per_household(s, AT, policy, household_ids=ids if step > 1 else None)
            out["tasks"] = len(tasks)
            out["sampled"] = len(ids)
        elif what == "report":
            from bot.reports.build import build_report, resolve_scope
            from bot.reports.config import ReportConfig
            from bot.reports.periods import parse_period

            report = build_report(s, period=parse_period("2026-Q3"), as_of=START.date(),
                                  scope=resolve_scope(s), tz=settings.timezone,
                                  config=ReportConfig.from_settings(settings),
                                  generated_at=datetime.now(UTC))
            out["sections"] = len(report.sections)
        else:
            raise SystemExit(f"unknown measurement {what}")
    out["wall_s"] = time.perf_counter() - wall0
    out["cpu_s"] = time.process_time() - cpu0
    if what == "baseline" and out.get("sampled", households) < households:
        scale = households / out["sampled"]
        out["measured_wall_s"], out["measured_cpu_s"] = out["wall_s"], out["cpu_s"]
        out["wall_s"], out["cpu_s"] = out["wall_s"] * scale, out["cpu_s"] * scale
    out["rss_before_mb"] = rss_before / 2**20
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def measure(what: str, url: str, sample: int = 0) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return what it printed."""
    proc = subprocess.run([sys.executable, __file__, "--measure", what, "--url", url, "--sample", str(sample)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plans_equal(url: str) -> dict[str, Any]:
    """The bulk plan, the previous (chunked, per-household rules) planner and the
    per-household baseline, compared task for task."""
    from benchmarks.planner_baseline import plan_per_household
    from bot.care.planner import iter_plan_per_household, plan, sort_key
    from bot.care.policy import Policy
    from bot.config import load_settings
    from storage.db import Database

    settings = load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY})
    db = Database(url, keyring=settings.keyring())
    policy = Policy.from_settings(settings)
    with db.session() as s:
        fast = plan(s, AT, policy)
    with db.session() as s:
        slow = plan_per_household(s, AT, policy)
    with db.session() as s:
        previous = sorted((t for part in iter_plan_per_household(s, AT, policy) for t in part), key=sort_key)
    db.dispose()
    statuses: dict[str, int] = {}
    for t in fast:
        statuses[t.status] = statuses.get(t.status, 0) + 1
    return {"equal": fast == slow == previous, "tasks": len(fast), "baseline_tasks": len(slow),
            "statuses": statuses}


def run(sizes: list[int], sample: int, cache: Path) -> dict[str, Any]:
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"sizes": {}}
    for n in sizes:
        url = county_db(n, cache)
        if n == min(sizes):
            results["equality"] = plans_equal(url)
        row: dict[str, Any] = {}
        row["plan"] = measure("plan", url)
        row["previous"] = measure("previous", url)
        row["plan_digest"] = measure("plan_digest", url)
        row["plan_objects"] = measure("plan_objects", url)
        row["baseline"] = measure("baseline", url, 0 if n == min(sizes) else sample)
        row["report"] = measure("report", url)
        row["speedup_cpu"] = row["baseline"]["cpu_s"] / row["plan"]["cpu_s"]
        row["speedup_wall"] = row["baseline"]["wall_s"] / row["plan"]["wall_s"]
        row["previous_ratio_cpu"] = row["previous"]["cpu_s"] / row["plan"]["cpu_s"]
        results["sizes"][n] = row
        print(f"  {n}: plan {row['plan']['wall_s']:.2f} s, previous {row['previous']['wall_s']:.1f} s, "
              f"baseline {row['baseline']['wall_s']:.1f} s, report {row['report']['wall_s']:.2f} s", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--sample", type=int, default=300,
                        help="households the baseline visits on counties above the smallest")
    parser.add_argument("--cache", default="/tmp/warmline-bench", help="where built counties are kept")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(args.measure, args.url, args.sample)))
        return None
    results = run([int(x) for x in args.sizes.split(",")], args.sample, Path(args.cache))
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
