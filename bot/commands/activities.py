"""`warmline activities [--township NAME] [--format table|json]`: activities with their answers."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy import select

from bot.commands import open_app
from domain.invitations import type_name, when_text
from storage.activity_stats import ALL_CHANNELS, Counts, count_query, fold_counts
from storage.models import Activity, Township

COLUMNS = ("invited", "yes", "waitlisted", "no", "maybe", "no_answer", "attended")
HEADERS = ("邀请", "参加", "候补", "不参加", "待定", "未回复", "出席")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("activities", help="activities with invited / yes / no / maybe / attended counts")
    parser.add_argument("--township", help="only this township's activities (name)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    tz = app.settings.timezone
    with app.db.session() as session:
        query = select(Activity).order_by(Activity.starts_at.desc(), Activity.id.desc())
        if args.township:
            township = session.scalar(select(Township).where(Township.name == args.township))
            if township is None:
                print(f"没有这个乡镇 / unknown township: {args.township}", file=sys.stderr)
                return 2
            query = query.where(Activity.township_id == township.id)
        activities = list(session.scalars(query))
        names = {tid: name for tid, name in session.execute(select(Township.id, Township.name))}
        counts = fold_counts(session.execute(count_query([a.id for a in activities])).all())
    rows = []
    for a in activities:
        per = counts.get(a.id, {ALL_CHANNELS: Counts()})
        rows.append({
            "id": a.id, "title": a.title, "type": a.type, "type_name": type_name(a.type),
            "township": names.get(a.township_id or -1), "starts_at": a.starts_at.astimezone(tz).isoformat(),
            "place": a.place, "capacity": a.capacity, "status": a.status,
            "send_at": a.send_at.astimezone(tz).isoformat() if a.send_at else None,
            **per[ALL_CHANNELS].as_dict(),
            "by_channel": {c: v.as_dict() for c, v in sorted(per.items()) if c != ALL_CHANNELS},
        })
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"{len(rows)} 个活动 / activities")
    print("\t".join(("id", "时间", "乡镇", "状态", "活动", *HEADERS)))
    for a, row in zip(activities, rows, strict=True):
        print("\t".join([str(a.id), when_text(a.starts_at, tz), row["township"] or "全县", a.status,
                         a.title, *(str(row[c]) for c in COLUMNS)]))
    return 0
