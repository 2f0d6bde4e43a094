"""`warmline chat --as ADDRESS`: the console channel.

Ctrl-C ends the chat at once. Every answer is saved as it is given, so whatever dialog was half
filled in is still there the next time this person opens a chat (or any channel). Why the loop
is run by hand: the line being read waits in a worker thread that nothing can interrupt, and
`asyncio.run` would wait for it — until Enter — before letting the process end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from typing import NoReturn

from bot.app import App
from bot.channels.console import run_console
from bot.commands import open_app

LEFT = "\n已退出。填到一半的内容已保存，下次打开会接着问 / left; what you were filling in is kept for next time."


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("chat", help="chat with the bot in this terminal (or from a script)")
    parser.add_argument("--as", dest="address", required=True,
                        help="who you are: a known person's phone number, or any name for a newcomer")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return chat(open_app(args), args.address)


def chat(app: App, address: str) -> int:
    """Chat until the input ends or Ctrl-C; on Ctrl-C leave at once (exit code 130)."""
    loop = asyncio.new_event_loop()
    # Through the loop's own handler, run between two callbacks, rather than a KeyboardInterrupt
    # raised wherever the main thread happens to be (inside SQLAlchemy's greenlet, a shielded
    # close, a half-done step); the KeyboardInterrupt path stays for a platform without it.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, _leave)
    try:
        return loop.run_until_complete(_chat(app, address))
    except KeyboardInterrupt:
        _leave()
        raise  # not reached


def _leave() -> NoReturn:
    print(LEFT, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)  # the reader thread is still blocked on the terminal; do not wait for it


async def _chat(app: App, address: str) -> int:
    try:
        return await run_console(app.runner, address)
    finally:
        await app.db.adispose()
