"""`warmline invite`: print a single-use, expiring registration code."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from sqlalchemy import select

from bot.commands import open_app
from storage.invites import create_invite
from storage.models import Household

ROLES = ("volunteer", "coordinator", "admin", "family")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("invite", help="make a single-use invite code")
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--township", help="township name (coordinators and volunteers)")
    parser.add_argument("--household", help="household code (family invites)")
    parser.add_argument("--ttl-days", type=float, help="days until the code expires (default from config)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    if args.role == "coordinator" and not args.township:
        print("协调员邀请码需要 --township / a coordinator invite needs --township", file=sys.stderr)
        return 2
    if args.role == "family" and not args.household:
        print("家庭邀请码需要 --household / a family invite needs --household", file=sys.stderr)
        return 2
    ttl = timedelta(days=args.ttl_days) if args.ttl_days else app.services.invite_ttl
    now = app.services.now()
    with app.db.session() as session:
        household_id = None
        if args.household:
            household = session.scalar(select(Household).where(Household.code == args.household))
            if household is None:
                print(f"没有这个户编号 / unknown household: {args.household}", file=sys.stderr)
                return 2
            household_id = household.id
        try:
            code = create_invite(session, role=args.role, now=now, ttl=ttl, township=args.township,
                                 household_id=household_id)
        except LookupError:
            print(f"没有这个乡镇 / unknown township: {args.township}", file=sys.stderr)
            return 2
    expires = app.services.local(now + ttl).strftime("%Y-%m-%d %H:%M")
    print(code)
    print(f"一次有效，{expires} 前使用 / single use, valid until {expires}", file=sys.stderr)
    return 0
