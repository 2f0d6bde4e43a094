"""`warmline db upgrade|current|downgrade`: the schema, through Alembic."""

from __future__ import annotations

import argparse

from bot.commands import check_database_file
from bot.config import load_settings
from storage import migrate


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("db", help="database schema (Alembic migrations)")
    actions = parser.add_subparsers(dest="db_action", required=True)
    up = actions.add_parser("upgrade", help="migrate to the newest schema (or --to REV)")
    up.add_argument("--to", default="head")
    up.set_defaults(func=_upgrade)
    down = actions.add_parser("downgrade", help="migrate down to a revision")
    down.add_argument("revision")
    down.set_defaults(func=_downgrade)
    cur = actions.add_parser("current", help="show the current revision")
    cur.set_defaults(func=_current)


def _url(args: argparse.Namespace) -> str:
    url = load_settings(db=args.db, config=args.config).database_url
    check_database_file(url)
    return url


def _upgrade(args: argparse.Namespace) -> int:
    migrate.upgrade(_url(args), args.to)
    print("数据库已是最新结构 / database schema is up to date")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    migrate.downgrade(_url(args), args.revision)
    return 0


def _current(args: argparse.Namespace) -> int:
    migrate.current(_url(args))
    return 0
