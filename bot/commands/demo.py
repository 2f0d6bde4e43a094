"""`warmline demo`: a fictional county in a local SQLite file, opened as a demo person."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import select

from bot.commands import open_app
from bot.commands.chat import chat
from bot.demo import DEMO_ADMIN_PHONE, DEMO_COORDINATOR_PHONE, DEMO_VOLUNTEER_PHONE, seed_demo
from storage.models import Person

DEMO_DB = "warmline-demo.db"
ROLE_NAMES = {"volunteer": "志愿者", "coordinator": "协调员", "admin": "管理员", "family": "家属"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="create (or reuse) a demo database and chat as a demo person")
    parser.add_argument("--as", dest="address", default=DEMO_VOLUNTEER_PHONE,
                        help=f"demo person's phone (volunteer {DEMO_VOLUNTEER_PHONE}, coordinator "
                             f"{DEMO_COORDINATOR_PHONE}, admin {DEMO_ADMIN_PHONE})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.db:
        args.db = str(Path(DEMO_DB).resolve())
    app = open_app(args)
    with app.db.session() as session:
        created = seed_demo(session, app.services.now())
        person = session.scalar(select(Person).where(Person.phone == args.address))
        who = (f"你是{ROLE_NAMES.get(str(person.role), str(person.role))}{person.name}（{args.address}）"
               if person is not None else f"你是新来的人（{args.address}），需要邀请码才能注册")
    out = sys.stdout
    out.write(("已创建" if created else "已打开") + f"演示数据库 {args.db}（虚构的青山县，人物均为虚构）。\n")
    out.write(f"{who}：回复数字选择，“取消”放弃，“菜单”回到开头。\n")
    others = [f"warmline demo --as {phone}（{label}）" for phone, label in (
        (DEMO_VOLUNTEER_PHONE, "志愿者"), (DEMO_COORDINATOR_PHONE, "协调员"), (DEMO_ADMIN_PHONE, "管理员"))
        if phone != args.address]
    out.write(f"换个身份：{'；'.join(others)}；按 Ctrl-D 或 Ctrl-C 退出。\n\n")
    out.flush()
    return chat(app, args.address)
