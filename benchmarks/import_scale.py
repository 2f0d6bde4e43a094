"""Importing a county's list in bulk, against the row-by-row import of a baseline revision in the
same run: `python benchmarks/import_scale.py`.

    python benchmarks/import_scale.py [--rows 100000] [--baseline-rows 4000] [--baseline REV] [--cache DIR]

Writes a fictional families file in the template's columns (two parents per household, the
father with a phone and a lost child, a contact volunteer; 12 townships, 48 villages) and
imports it with the real command, `python -m bot.cli import families FILE`, each in its own
process, into a fresh SQLite database that already holds the volunteers (imported first):
- this tree, the full file (--rows): the target (100,000 rows in <= 10 s);
- the same file again: a re-import that finds every record unchanged;
- a smaller file (--baseline-rows) with this tree and with the code of --baseline (the import
  as it was, one row at a time, checked out once as a detached worktree under --cache): the
  ratio, measured in the same run. The row-by-row import grows faster than linearly (every
  flush walks the objects already in the session), so it is not run at full size;
- the two databases the small file produced are compared table by table (households, people,
  members, children, contact assignments, villages; ids and creation times aside): the bulk
  import must write exactly what the row-by-row import wrote.
CPU time is the command's own (its rusage), peak memory its VmHWM. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import BENCH_DATA_KEY, baseline_worktree, fresh_sqlite  # noqa: E402

BASELINE = "6b17959"  # imports before this change: one row at a time through the ORM
HOUSEHOLDS_PER_VOLUNTEER = 8
TOWNSHIPS = 12


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    """(volunteers file, families file) for `rows` family rows (two per household)."""
    households = rows // 2
    volunteers = max(1, households // HOUSEHOLDS_PER_VOLUNTEER)
    vol = folder / f"volunteers-{rows}.csv"
    lines = ["姓名,电话,乡镇,角色"]
    lines += [f"志愿者{v},100{v:08d},第{v % TOWNSHIPS + 1}镇,志愿者" for v in range(volunteers)]
    vol.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fam = folder / f"families-{rows}.csv"
    lines = ["户编号,乡镇,村,姓名,关系,性别,出生日期,生日历法,农历生日,电话,困难家庭,联系志愿者,子女姓名,子女出生日期,"
             "子女去世日期,去世原因,纳入日期"]
    for h in range(households):
        v = h // HOUSEHOLDS_PER_VOLUNTEER % volunteers
        town, village = f"第{v % TOWNSHIPS + 1}镇", f"村{h % 4}"
        lunar = "农历" if h % 4 == 0 else "公历"
        lunar_day = f"{1 + h % 12:02d}-{1 + h % 29:02d}" if h % 4 == 0 else ""
        lines.append(f"H{h:07d},{town},{village},父{h},父亲,男,{1945 + h % 15}-{1 + h % 12:02d}-{1 + h % 28:02d},"
                     f"{lunar},{lunar_day},138 {h // 10000:04d} {h % 10000:04d},{'是' if h % 5 == 0 else '否'},"
                     f"100-{v // 10000:04d}-{v % 10000:04d},子{h},{1975 + h % 10}-03-04,{2005 + h % 15}-06-07,疾病,"
                     f"2026-{1 + h % 10:02d}-01")
        lines.append(f"H{h:07d},{town},{village},母{h},母亲,女,{1947 + h % 15}-{1 + (h * 7) % 12:02d}-{1 + h % 27:02d},"
                     f"公历,,,,,,,,,")
    fam.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vol, fam


def command(code: Path, url: str, *argv: str) -> dict[str, Any]:
    """`python -m bot.cli --db URL ARGV` with the `bot` package of `code`; its time and memory."""
    env = {**os.environ, "PYTHONPATH": str(code), "WARMLINE_DATA_KEY": BENCH_DATA_KEY}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--db", url, *argv], cwd=code, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} with {code} failed: {err[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "output": out.strip().splitlines()}


def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """What an import wrote, table by table, without ids or creation times (children's names
    and causes are decrypted with the data key)."""
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from bot.config import load_settings
    from storage.db import Database
    from storage.models import (
        ContactAssignment,
        DeceasedChild,
        Household,
        HouseholdMember,
        Person,
        Township,
        Village,
    )

    settings = load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY})
    db = Database(url, keyring=settings.keyring())
    volunteer = aliased(Person)
    queries = {
        "households": select(Household.code, Township.name, Village.name, Household.hardship, Household.enrolled_on,
                             Household.visit_preference).join(Township, Township.id == Household.township_id)
        .outerjoin(Village, Village.id == Household.village_id),
        "members": select(Household.code, Person.name, Person.phone, Person.role, Person.township_id,
                          HouseholdMember.relation, HouseholdMember.sex, HouseholdMember.birth_date,
                          HouseholdMember.birthday_calendar, HouseholdMember.lunar_birth_month,
                          HouseholdMember.lunar_birth_day, HouseholdMember.lunar_birth_leap, HouseholdMember.alive)
        .join(HouseholdMember, HouseholdMember.household_id == Household.id)
        .join(Person, Person.id == HouseholdMember.person_id),
        "children": select(Household.code, DeceasedChild.name, DeceasedChild.birth_date, DeceasedChild.death_date,
                           DeceasedChild.death_cause).join(DeceasedChild, DeceasedChild.household_id == Household.id),
        "assignments": select(Household.code, volunteer.phone, ContactAssignment.started_on, ContactAssignment.ended_on)
        .join(ContactAssignment, ContactAssignment.household_id == Household.id)
        .join(volunteer, volunteer.id == ContactAssignment.volunteer_id),
        "people": select(Person.name, Person.phone, Person.role, Person.township_id, Person.active),
        "villages": select(Township.name, Village.name).join(Township, Township.id == Village.township_id),
    }
    with db.session() as s:
        out = {name: sorted((tuple(r) for r in s.execute(q)), key=repr) for name, q in queries.items()}
    db.dispose()
    return out


def run(rows: int, baseline_rows: int, baseline: str, cache: Path) -> dict[str, Any]:
    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / "imports"
    folder.mkdir(exist_ok=True)
    old = baseline_worktree(baseline, cache, "import")
    results: dict[str, Any] = {"rows": rows, "baseline_rows": baseline_rows, "baseline": baseline}

    def fresh(name: str, volunteers: Path) -> str:
        url = fresh_sqlite(folder / f"{name}.db")
        command(ROOT, url, "import", "volunteers", str(volunteers), "--county", "基准县")
        return url

    vol, fam = write_files(folder, rows)
    url = fresh("full", vol)
    results["full"] = command(ROOT, url, "import", "families", str(fam))
    results["reimport"] = command(ROOT, url, "import", "families", str(fam))
    print(f"  {rows} rows: {results['full']['cpu_s']:.2f} s CPU ({results['full']['wall_s']:.2f} s wall), "
          f"{results['full']['peak_rss_mb']:.0f} MB; re-import {results['reimport']['cpu_s']:.2f} s CPU", file=sys.stderr)
    small_vol, small = write_files(folder, baseline_rows)
    new_url, old_url = fresh("small-bulk", small_vol), fresh("small-rows", small_vol)
    results["small_bulk"] = command(ROOT, new_url, "import", "families", str(small))
    results["small_baseline"] = command(old, old_url, "import", "families", str(small))
    results["ratio_cpu"] = results["small_baseline"]["cpu_s"] / results["small_bulk"]["cpu_s"]
    a, b = contents(new_url), contents(old_url)
    results["same_rows"] = a == b
    results["differences"] = {k: (len(a[k]), len(b[k])) for k in a if a[k] != b[k]}
    results["load"] = os.getloadavg()
    print(f"  {baseline_rows} rows: bulk {results['small_bulk']['cpu_s']:.2f} s CPU, row by row "
          f"{results['small_baseline']['cpu_s']:.2f} s CPU ({results['ratio_cpu']:.1f}x); same rows: {results['same_rows']}",
          file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=4_000)
    parser.add_argument("--baseline", default=BASELINE, help="git revision whose import is the baseline")
    parser.add_argument("--cache", default="/tmp/warmline-bench")
    args = parser.parse_args(argv)
    results = run(args.rows, args.baseline_rows, args.baseline, Path(args.cache))
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
