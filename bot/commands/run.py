"""`warmline run`: the long-running service — channels, webhooks, the delivery worker, the scheduler.

Everything it starts is configured by settings: a channel runs when its credentials are set;
the HTTP app serves the webhooks of every running channel plus /healthz; the delivery worker
sends what the outbox holds; the scheduler plans reminders and greetings on its own clock.
SIGTERM / SIGINT stop it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

import uvicorn

from bot.app import App
from bot.channels.base import Channel, configured_channels
from bot.commands import open_app
from bot.delivery.base import ChannelSender
from bot.http import DEFAULT_HOST, DEFAULT_PORT, HttpLimits, build_http_app, uvicorn_options

log = logging.getLogger("warmline.run")

# Background services, each `async def run_x(app, senders, stop_event)`; they return when the
# event is set.
Background = Callable[[App, dict[str, ChannelSender], asyncio.Event], Awaitable[None]]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run the bot: channels, webhooks, delivery and scheduler")
    parser.add_argument("--no-scheduler", action="store_true", help="do not plan reminders in this process")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    return asyncio.run(serve(app, scheduler=not args.no_scheduler))


def _background(scheduler: bool) -> list[Background]:
    """The delivery worker, and the scheduler unless this process is told not to plan.
    Imported here, not at module level, so `warmline --help` stays light."""
    from bot.care.scheduler import run_scheduler
    from bot.delivery.worker import run_worker

    return [run_worker, run_scheduler] if scheduler else [run_worker]


async def serve(app: App, *, scheduler: bool = True, stop: asyncio.Event | None = None) -> int:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    channels: list[Channel] = configured_channels(app)
    if not channels:
        log.warning("no channel is configured; only the delivery worker and scheduler run")
    senders: dict[str, ChannelSender] = {}
    routes = []
    for channel in channels:
        routes.extend(channel.routes())
        sender = channel.sender()
        if sender is not None:
            senders[sender.channel] = sender
    from bot.console import console_routes  # the web console for coordinators (/console)

    routes.extend(console_routes(app))
    host = app.settings.get_env("WARMLINE_HTTP_HOST", DEFAULT_HOST) or DEFAULT_HOST
    port = int(app.settings.get_env("WARMLINE_HTTP_PORT", str(DEFAULT_PORT)) or DEFAULT_PORT)
    limits = HttpLimits.from_section(app.settings.section("http"))  # deadlines and caps, bot/http.py
    server = uvicorn.Server(uvicorn.Config(build_http_app(routes, limits), host=host, port=port,
                                           log_level="warning", lifespan="off", **uvicorn_options(limits)))
    tasks = [asyncio.create_task(server.serve(), name="http")]
    for channel in channels:
        await channel.start()
    tasks += [asyncio.create_task(job(app, senders, stop), name=getattr(job, "__name__", "job"))
              for job in _background(scheduler)]
    log.info("running channels=%s http=%s:%s", [c.name for c in channels], host, port)
    await stop.wait()
    for channel in channels:
        await channel.stop()
    server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await app.db.adispose()
    return 0
