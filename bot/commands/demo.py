"""`warmline demo`: a fictional county in a local SQLite file, opened as a demo volunteer."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.channels.console import run_console
from bot.commands import open_app
from bot.demo import DEMO_COORDINATOR_PHONE, DEMO_VOLUNTEER_PHONE, seed_demo

DEMO_DB = "warmline-demo.db"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="create (or reuse) a demo database and chat as a volunteer")
    parser.add_argument("--as", dest="address", default=DEMO_VOLUNTEER_PHONE,
                        help=f"demo person's phone (volunteer {DEMO_VOLUNTEER_PHONE}, coordinator {DEMO_COORDINATOR_PHONE})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.db:
        args.db = str(Path(DEMO_DB).resolve())
    app = open_app(args)
    with app.db.session() as session:
        created = seed_demo(session, app.services.now())
    out = sys.stdout
    out.write(("已创建" if created else "已打开") + f"演示数据库 {args.db}（虚构的青山县，人物均为虚构）。\n")
    out.write(f"你是志愿者林晓燕（{DEMO_VOLUNTEER_PHONE}）：回复数字选择，“取消”放弃，“菜单”回到开头。\n")
    out.write(f"换个身份：warmline demo --as {DEMO_COORDINATOR_PHONE}（协调员）；按 Ctrl-D 退出。\n\n")
    return asyncio.run(_chat(app, args.address))


async def _chat(app, address: str) -> int:  # type: ignore[no-untyped-def]
    try:
        return await run_console(app.runner, address)
    finally:
        await app.db.adispose()
