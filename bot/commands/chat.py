"""`warmline chat --as ADDRESS`: the console channel."""

from __future__ import annotations

import argparse
import asyncio

from bot.channels.console import run_console
from bot.commands import open_app


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("chat", help="chat with the bot in this terminal (or from a script)")
    parser.add_argument("--as", dest="address", required=True,
                        help="who you are: a known person's phone number, or any name for a newcomer")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    return asyncio.run(_chat(app, args.address))


async def _chat(app, address: str) -> int:  # type: ignore[no-untyped-def]
    try:
        return await run_console(app.runner, address)
    finally:
        await app.db.adispose()
