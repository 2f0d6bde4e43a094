"""`warmline due [--at ISO] [--volunteer PHONE] [--format table|json]`: the planner's tasks."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy import select

from bot.care.planner import STATUSES, plan
from bot.care.policy import Policy
from bot.care.wording import status_name, task_title
from bot.commands import open_app, parse_at
from storage.models import Person


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("due", help="what the care rhythm asks of whom, at an instant")
    parser.add_argument("--at", help="ISO instant (default: now; WARMLINE_NOW moves now)")
    parser.add_argument("--volunteer", metavar="PHONE", help="only this volunteer's households")
    parser.add_argument("--status", help=f"comma-separated statuses to show ({','.join(STATUSES)})")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    tz = app.settings.timezone
    at = parse_at(args.at, tz) if args.at else app.services.now()
    policy = Policy.from_settings(app.settings)
    wanted = set(args.status.split(",")) if args.status else set(STATUSES)
    if not wanted <= set(STATUSES):
        print(f"未知状态 / unknown status: {','.join(sorted(wanted - set(STATUSES)))}", file=sys.stderr)
        return 2
    with app.db.session() as session:
        volunteer_id = None
        if args.volunteer:
            volunteer_id = session.scalar(select(Person.id).where(Person.phone == args.volunteer))
            if volunteer_id is None:
                print(f"没有这个电话的志愿者 / no one with phone {args.volunteer}", file=sys.stderr)
                return 2
        tasks = [t for t in plan(session, at, policy, volunteer_id=volunteer_id, tz=tz)
                 if t.status in wanted]
        names = {pid: name for pid, name in session.execute(select(Person.id, Person.name).where(
            Person.id.in_({t.volunteer_id for t in tasks if t.volunteer_id})))}
    if args.format == "json":
        print(json.dumps([{**t.as_dict(), "title": task_title(t),
                           "volunteer": names.get(t.volunteer_id or 0)} for t in tasks],
                         ensure_ascii=False, indent=2))
        return 0
    print(f"{at.astimezone(tz).isoformat(timespec='minutes')}  {len(tasks)} 项 / tasks")
    for t in tasks:
        window = f"{t.opens.isoformat()}..{t.closes.isoformat() if t.closes else ''}"
        print(f"{status_name(t.status):<4} {t.due.isoformat()}  {t.household_code or '-':<8} "
              f"{task_title(t)}  [{window}]  {names.get(t.volunteer_id or 0, '-')}")
    return 0
