"""`warmline calendar --year 2026 [--format table|json]`: the program's occasions on real dates."""

from __future__ import annotations

import argparse
import json
import sys

from bot.care.calendar import FIRST_YEAR, LAST_YEAR, occasions_in
from bot.config import load_settings

WEEKDAYS = "一二三四五六日"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("calendar", help="list the program's occasions (holidays, 5·29, 清明…) for a year")
    parser.add_argument("--year", type=int, required=True, help=f"a year {FIRST_YEAR}–{LAST_YEAR}")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    load_settings(db=args.db, config=args.config)  # a mistake in --config is reported here too
    if not FIRST_YEAR <= args.year <= LAST_YEAR:
        print(f"年份需在 {FIRST_YEAR}–{LAST_YEAR} 之间 / year must be {FIRST_YEAR}–{LAST_YEAR}",
              file=sys.stderr)
        return 2
    rows = occasions_in(args.year)
    if args.format == "json":
        print(json.dumps([{"key": o.key, "name": o.name, "date": o.day.isoformat()} for o in rows],
                         ensure_ascii=False, indent=2))
        return 0
    width = max(len(o.key) for o in rows)
    for o in rows:
        print(f"{o.day.isoformat()}  周{WEEKDAYS[o.day.weekday()]}  {o.key:<{width}}  {o.name}")
    return 0
