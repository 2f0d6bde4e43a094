"""`warmline schedule [--at ISO]`: plan everything due at that instant into the outbox, then exit.

The same jobs `warmline run` ticks (bot/care/scheduler.py); running it twice plans nothing twice.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bot.care.scheduler import run_jobs
from bot.commands import open_app, parse_at


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("schedule", help="plan reminders due at an instant into the outbox and exit")
    parser.add_argument("--at", help="ISO instant (default: now; WARMLINE_NOW moves now)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    at = parse_at(args.at, app.settings.timezone) if args.at else app.services.now()

    async def once() -> dict[str, Any]:
        try:
            return await run_jobs(app, at)
        finally:
            await app.db.adispose()

    results = asyncio.run(once())
    print(f"计划时刻 / planned for {app.services.local(at).isoformat(timespec='minutes')}")
    failed = False
    for name, result in results.items():
        title = JOB_NAMES.get(name, name)
        if isinstance(result, Exception):
            failed = True
            print(f"  {title}: 失败 / failed ({type(result).__name__})")
        elif hasattr(result, "digests"):
            print(f"  {title}: {result.digests} 条摘要 / digests, "
                  f"{result.escalated_tasks} 项上报 / escalated, "
                  f"{result.skipped_existing} 条已存在 / already planned")
        else:
            print(f"  {title}: {_counts(result)}")
    return 1 if failed else 0


JOB_NAMES = {"reminders": "每日提醒 / reminders", "activity_sends": "活动邀请 / activity invitations",
             "activity_reminders": "活动提醒 / activity reminders", "casework": "个案跟进 / case work",
             "greetings": "节日问候 / greetings", "family_messages": "家属留言 / family messages"}
COUNT_WORDS = {"invited": "已邀请 invited", "reminded": "已提醒 reminded", "renewal_tasks": "续保任务 renewal tasks",
               "escalated": "已上报 escalated", "planned": "已安排 planned", "already": "已存在 already planned",
               "hard_day": "难过的日子不发 held for hard days", "unreachable": "联系不上 unreachable",
               "delivered": "已送达 delivered", "expired": "已过期 expired", "failed": "失败 failed",
               "answered": "已回复 answered"}


def _counts(result: Any) -> str:
    """A job's counts as words; only the non-zero ones, or "nothing to do"."""
    if not isinstance(result, dict):
        return str(result)
    shown = [f"{COUNT_WORDS.get(k, k)} {v}" for k, v in result.items() if v]
    return ", ".join(shown) if shown else "无事可做 / nothing to do"
