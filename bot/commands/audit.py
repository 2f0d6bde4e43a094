"""`warmline audit`: who wrote or read what, about which household, and when."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy import select
from sqlalchemy.orm import aliased

from bot.commands import open_app
from storage.models import AuditEntry, Household, Person


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="the audit log of writes and sensitive reads")
    parser.add_argument("--household", help="household code (户编号)")
    parser.add_argument("--person", help="the actor's phone number")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    actor = aliased(Person)
    query = (select(AuditEntry, actor.name, actor.phone, Household.code)
             .outerjoin(actor, actor.id == AuditEntry.actor_id)
             .outerjoin(Household, Household.id == AuditEntry.household_id)
             .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(args.limit))
    with app.db.session() as session:
        if args.household:
            household = session.scalar(select(Household).where(Household.code == args.household))
            if household is None:
                print(f"没有这个户编号 / unknown household: {args.household}", file=sys.stderr)
                return 2
            query = query.where(AuditEntry.household_id == household.id)
        if args.person:
            person = session.scalar(select(Person).where(Person.phone == args.person))
            if person is None:
                print(f"没有这个人 / unknown person: {args.person}", file=sys.stderr)
                return 2
            query = query.where(AuditEntry.actor_id == person.id)
        rows = [
            {"at": app.services.local(entry.at).isoformat(timespec="seconds"), "actor": name or "system",
             "phone": phone or "", "action": entry.action, "entity": entry.entity,
             "entity_id": entry.entity_id, "household": code or ""}
            for entry, name, phone, code in session.execute(query)
        ]
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    print(f"{'时间/at':25} {'操作者/actor':10} {'动作':6} {'对象/entity':18} {'户/household':10}")
    for row in rows:
        print(f"{row['at']:25} {row['actor']:10} {row['action']:6} {row['entity']:18} {row['household']:10}")
    print(f"共 {len(rows)} 条 / {len(rows)} entries")
    return 0
