"""The period report of a large county or a province, against the report code of a baseline
revision, in the same run: `python benchmarks/report_scale.py`.

    python benchmarks/report_scale.py [--sizes 100000] [--baseline REV] [--cache DIR] [--period 2026-Q3]

For each size the synthetic county of benchmarks/planner_scale.py (built once, kept in --cache)
gets the county-wide report (`build_report`, with the planner's task snapshot, as
`warmline report` makes it), each in a fresh Python process so its peak memory (VmHWM) is its
own: first with this tree's code, then with the code of `--baseline` (a git revision, checked out
once as a detached worktree under --cache; default: the revision before the report was made
fast), then this tree again. The two runs of the current code bracket the baseline, so machine
load falls on both sides. Each process also prints a digest of every figure the report holds,
so the run says whether both revisions gave the same figures (total and township rows of every
table) and the same volunteer rows. The per-household money listing is left out, and past
`DETAIL_ROWS` volunteers the new code leaves the volunteer rows out: a province's report lists
only the households over their entitlement and sums the volunteers (that is the change, not a
different figure).
Times are printed, never asserted (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "3ae4282"  # reports before this speed-up (per-household money table, a scan of visits per figure)
DATA_KEY = "YmVuY2htYXJrLW9ubHkta2V5LWZvci13YXJtbGluZSE="  # benchmarks.common.BENCH_DATA_KEY (fictional)


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _measure(url: str, period: str) -> dict[str, Any]:
    """One report, timed, in this process (whose `bot` package is the tree being measured)."""
    from datetime import UTC, date, datetime

    from bot.config import load_settings
    from bot.reports.build import build_report, resolve_scope
    from bot.reports.config import ReportConfig
    from bot.reports.periods import parse_period
    from storage.db import Database

    settings = load_settings(db=url, env={"WARMLINE_DATA_KEY": DATA_KEY})
    db = Database(url, keyring=settings.keyring())
    with db.session() as s:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        report = build_report(s, period=parse_period(period), as_of=date(2026, 11, 20), scope=resolve_scope(s),
                              tz=settings.timezone, config=ReportConfig.from_settings(settings),
                              generated_at=datetime.now(UTC))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    def digest(volunteers: bool) -> str:
        """Every row of every table (not the money listing), volunteer rows or all the others."""
        figures = [(t.key, [[(k, r.get(k)) for k in sorted(r)] for r in t.rows if (r.get("level") == "志愿者") == volunteers])
                   for section in report.sections for t in section.tables if t.key != "money_households"]
        return hashlib.sha256(json.dumps(figures, default=str, ensure_ascii=False).encode()).hexdigest()[:16]

    rows = sum(len(t.rows) for section in report.sections for t in section.tables)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": _peak_rss_mb(), "rows": rows,
            "money_rows": len(report.table("money_households").rows), "notes": report.warnings,
            "figures": digest(False), "volunteer_rows": digest(True)}


def measure(code: Path, url: str, period: str) -> dict[str, Any]:
    """A fresh interpreter that imports `bot` from `code` and makes the report once."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run([sys.executable, __file__, "--measure", url, "--period", period, "--code", str(code)],
                          capture_output=True, text=True, check=False, env=env, cwd=code)
    if proc.returncode != 0:
        raise RuntimeError(f"report with the code of {code} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: list[int], baseline: str, cache: Path, period: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import baseline_worktree
    from benchmarks.planner_scale import county_db

    old = baseline_worktree(baseline, cache, "report")
    results: dict[str, Any] = {"baseline": baseline, "period": period, "sizes": {}}
    for n in sizes:
        url = county_db(n, cache)
        first = measure(ROOT, url, period)
        before = measure(old, url, period)
        second = measure(ROOT, url, period)
        now = min(first, second, key=lambda r: r["cpu_s"])
        row = {"current": now, "current_runs": [first, second], "baseline": before,
               "same_figures": first["figures"] == second["figures"] == before["figures"],
               "same_volunteer_rows": first["volunteer_rows"] == before["volunteer_rows"],
               "ratio_cpu": before["cpu_s"] / now["cpu_s"], "load": os.getloadavg()}
        results["sizes"][n] = row
        print(f"  {n}: report {now['cpu_s']:.2f} s CPU ({now['wall_s']:.2f} s wall), {now['peak_rss_mb']:.0f} MB; "
              f"baseline {before['cpu_s']:.2f} s CPU ({before['wall_s']:.2f} s wall), {before['peak_rss_mb']:.0f} MB; "
              f"same figures: {row['same_figures']}, same volunteer rows: {row['same_volunteer_rows']}"
              f"{' (left out: ' + now['notes'][0] + ')' if now['notes'] else ''}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--baseline", default=BASELINE, help="git revision whose report code is the baseline")
    parser.add_argument("--cache", default="/tmp/warmline-bench", help="where built counties are kept")
    parser.add_argument("--period", default="2026-Q3")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        sys.path.insert(0, args.code)
        print(json.dumps(_measure(args.measure, args.period), ensure_ascii=False))
        return None
    results = run([int(x) for x in args.sizes.split(",")], args.baseline, Path(args.cache), args.period)
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
