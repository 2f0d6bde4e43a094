"""`warmline schedule [--at ISO]`: plan everything due at that instant into the outbox, then exit.

The same jobs `warmline run` ticks (bot/care/scheduler.py); running it twice plans nothing twice.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bot.care.scheduler import run_jobs
from bot.commands import open_app
from bot.config import parse_instant


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("schedule", help="plan reminders due at an instant into the outbox and exit")
    parser.add_argument("--at", help="ISO instant (default: now; WARMLINE_NOW moves now)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    at = parse_instant(args.at, app.settings.timezone) if args.at else app.services.now()

    async def once() -> dict[str, Any]:
        try:
            return await run_jobs(app, at)
        finally:
            await app.db.adispose()

    results = asyncio.run(once())
    failed = False
    for name, result in results.items():
        if isinstance(result, Exception):
            failed = True
            print(f"{name}: 失败 / failed ({type(result).__name__})")
        elif hasattr(result, "digests"):
            print(f"{name}: {result.digests} 条摘要 / digests, "
                  f"{result.escalated_tasks} 项上报 / escalated, "
                  f"{result.skipped_existing} 条已存在 / already planned")
        else:
            print(f"{name}: {result}")
    return 1 if failed else 0
