"""A real delivery-worker process for crash tests: `python -m tests.fakes.worker_main DB PLATFORM_URL`.

With a third argument `standby` it imports everything, then waits for a line on stdin before it
starts: a test can keep a warm replacement ready and "restart" the moment it kills a worker.

It is `warmline run`'s delivery service (bot.delivery.worker.run_worker) with the fake platform's
sender as its only channel; SIGTERM stops it gracefully, SIGKILL is what the tests throw at it.
WARMLINE_CONFIG may point at a TOML file with a [delivery] section.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from bot.app import build_app
from bot.config import load_settings
from bot.delivery.worker import run_worker
from tests.fakes.sender import FakePlatformSender


async def main(db: str, platform_url: str, standby: bool = False) -> None:
    if standby:
        await asyncio.to_thread(sys.stdin.readline)
    app = build_app(load_settings(db=db))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sender = FakePlatformSender(platform_url)
    print("worker ready", flush=True)
    try:
        await run_worker(app, {sender.channel: sender}, stop)
    finally:
        await sender.aclose()
        await app.db.adispose()
    print("worker stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], standby=sys.argv[3:] == ["standby"]))
