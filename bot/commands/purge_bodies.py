"""`warmline purge-bodies`: blank delivered message bodies older than the retention now.

The scheduler of `warmline run` does the same every tick; this command is for a deployment that
runs without the scheduler, or to apply a shorter retention at once (`--days 0` after a leak).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from bot.commands import open_app
from bot.message_retention import keep_bodies
from storage.outbox import purge_delivered_bodies


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("purge-bodies",
                            help="blank the text of delivered messages older than [delivery] keep_bodies_days")
    parser.add_argument("--days", type=float, help="keep bodies this many days instead of the setting")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    keep = timedelta(days=args.days) if args.days is not None else keep_bodies(app.settings)
    if keep < timedelta(0):
        print("--days 不能为负数 / --days cannot be negative", file=sys.stderr)
        return 2
    with app.db.session() as session:
        purged = purge_delivered_bodies(session, app.services.now(), keep)
    print(f"已清除 {purged} 条已送达消息的正文 / blanked the text of {purged} delivered messages")
    return 0
