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
import errno
import gc
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import uvicorn

from bot.app import App
from bot.channels.base import Channel, configured_channels
from bot.commands import UsageError, open_app
from bot.delivery.base import ChannelSender
from bot.http import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    HttpLimits,
    build_http_app,
    burst_socket,
    fit_open_files,
    uvicorn_options,
)

if TYPE_CHECKING:
    from bot.channels.step_processes import StepProcesses

log = logging.getLogger("warmline.run")

# Background services, each `async def run_x(app, senders, stop_event)`; they return when the
# event is set.
Background = Callable[[App, dict[str, ChannelSender], asyncio.Event], Awaitable[None]]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run the bot: channels, webhooks, delivery and scheduler")
    parser.add_argument("--no-scheduler", action="store_true", help="do not plan reminders in this process")
    # a helper process started by `warmline run` itself ([core] step_processes), not by people
    parser.add_argument("--step-process", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


NO_CHANNEL = (
    "没有配置任何渠道，只运行发送和排班。要接入聊天，请设置 / no channel is configured (only delivery and the "
    "scheduler run); to connect one set: Telegram: WARMLINE_TELEGRAM_TOKEN; WeChat Official Account: "
    "WARMLINE_WECHAT_APPID, WARMLINE_WECHAT_SECRET, WARMLINE_WECHAT_TOKEN; WeCom: WARMLINE_WECOM_CORP_ID, "
    "WARMLINE_WECOM_SECRET, WARMLINE_WECOM_AGENT_ID, WARMLINE_WECOM_TOKEN, WARMLINE_WECOM_AES_KEY; SMS: "
    "WARMLINE_SMS_PROVIDER, WARMLINE_SMS_ACCESS_KEY_ID, WARMLINE_SMS_ACCESS_KEY_SECRET, WARMLINE_SMS_SIGN_NAME "
    "(README: Channels)")


def listen_address(app: App) -> tuple[str, int]:
    """WARMLINE_HTTP_HOST and WARMLINE_HTTP_PORT, checked: a port is a number 1–65535."""
    host = app.settings.get_env("WARMLINE_HTTP_HOST", DEFAULT_HOST) or DEFAULT_HOST
    text = app.settings.get_env("WARMLINE_HTTP_PORT", str(DEFAULT_PORT)) or str(DEFAULT_PORT)
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"WARMLINE_HTTP_PORT 应是 1–65535 的端口号，现在是 {text!r} / "
                         f"WARMLINE_HTTP_PORT must be a port number 1–65535, not {text!r}")
    return host, int(text)


def bind(host: str, port: int, backlog: int = 128) -> socket.socket:
    """The listening socket, opened before anything starts so a taken port is said plainly."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise UsageError(f"WARMLINE_HTTP_HOST {host!r} 不是本机地址 / is not an address of this machine") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"端口 {port} 已被占用（另一个暖心或别的程序在用）；换一个：WARMLINE_HTTP_PORT=… / "
                             f"port {port} on {host} is already in use; choose another with WARMLINE_HTTP_PORT") from None
        raise UsageError(f"无法在 {host}:{port} 上监听 / cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(max(1, backlog))  # deep from the first moment: a burst may arrive during start-up
    sock.setblocking(False)
    return sock


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    if args.step_process:
        return asyncio.run(serve_helper(app))
    host, port = listen_address(app)
    sock = bind(host, port, HttpLimits.from_section(app.settings.section("http")).backlog)
    from bot.channels.step_processes import helper_argv

    helpers = helper_argv(getattr(args, "db", None), getattr(args, "config", None),
                          bool(getattr(args, "verbose", False)))
    return asyncio.run(serve(app, scheduler=not args.no_scheduler, sock=sock, helpers=helpers))


async def serve_helper(app: App) -> int:
    """A helper process of `[core] step_processes`: the steps of the chats given to it."""
    from bot.channels.step_processes import serve_steps, steps_per_process
    from bot.channels.telegram import from_app
    from bot.delivery.worker import WorkerSettings

    telegram = from_app(app)
    if telegram is None:
        print("step process: WARMLINE_TELEGRAM_TOKEN is not set", file=sys.stderr)
        return 2
    heartbeat = WorkerSettings.from_settings(app.settings).heartbeat
    steps = steps_per_process(app.settings, app.db.url)
    app.db.concurrent_steps = steps  # its pool: its share of the steps
    telegram.share(None, steps)
    gc.freeze()  # as in `serve`: what is loaded now lives as long as the process
    return await serve_steps(app, telegram, heartbeat)


async def share_steps(app: App, channels: list[Channel], helpers: list[str] | None) -> StepProcesses | None:
    """Start the helper processes `[core] step_processes` asks for (PostgreSQL, Telegram)."""
    from bot.channels.step_processes import (
        StepProcesses,
        configured,
        step_processes,
        steps_per_process,
    )
    from bot.channels.telegram import TelegramChannel
    from domain.services import OffsetClock

    count = step_processes(app.settings, app.db.url)
    if count == 1 and configured(app.settings) > 1:
        log.warning("[core] step_processes needs PostgreSQL; on SQLite every step runs in this process")
    telegram = next((c for c in channels if isinstance(c, TelegramChannel)), None)
    if count < 2 or telegram is None or helpers is None:
        return None
    # a clock set with WARMLINE_NOW: the helpers' runs from the same instant, so the processes
    # agree on the time (a retry's due time written by one is read by another)
    clock = app.services.clock
    same_clock = {"WARMLINE_NOW_ORIGIN": repr(clock.origin)} if isinstance(clock, OffsetClock) else {}
    shared = StepProcesses(count, helpers, telegram.run_update, telegram.sender().hold_bulk,
                           environment=same_clock)
    await shared.start()
    telegram.share(shared, steps_per_process(app.settings, app.db.url))
    log.info("steps shared with helper processes pids=%s", shared.pids)
    return shared


def _background(scheduler: bool) -> list[Background]:
    """The delivery worker, and the scheduler unless this process is told not to plan.
    Imported here, not at module level, so `warmline --help` stays light."""
    from bot.care.scheduler import run_scheduler
    from bot.delivery.worker import run_worker

    return [run_worker, run_scheduler] if scheduler else [run_worker]


async def serve(app: App, *, scheduler: bool = True, stop: asyncio.Event | None = None,
                sock: socket.socket | None = None, helpers: list[str] | None = None) -> int:
    """`helpers`: the command line of a helper process (`[core] step_processes`); without it
    every step runs in this process."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    channels: list[Channel] = configured_channels(app)
    if not channels:
        print(NO_CHANNEL, file=sys.stderr)
    senders: dict[str, ChannelSender] = {}
    routes = []
    for channel in channels:
        routes.extend(channel.routes())
        sender = channel.sender()
        if sender is not None:
            senders[sender.channel] = sender
    from bot.console import console_routes  # the web console for coordinators (/console)

    routes.extend(console_routes(app))
    host, port = listen_address(app)
    limits = fit_open_files(HttpLimits.from_section(app.settings.section("http")))  # bot/http.py
    server = uvicorn.Server(uvicorn.Config(build_http_app(routes, limits), host=host, port=port,
                                           log_level="warning", lifespan="off", **uvicorn_options(limits)))
    tasks = [asyncio.create_task(server.serve(sockets=[burst_socket(sock, limits)] if sock else None),
                               name="http")]
    names = ", ".join(c.name for c in channels) or "无 / none"
    print(f"暖心已启动 / Warmline is running: http://{host}:{port} (/healthz)；渠道 / channels: {names}；"
          "Ctrl-C 停止 / to stop", file=sys.stderr)
    opened = await app.db.open_pool()
    if opened:
        log.info("database pool opened connections=%d", opened)
    shared = await share_steps(app, channels, helpers)
    for channel in channels:
        await channel.start()
    tasks += [asyncio.create_task(job(app, senders, stop), name=getattr(job, "__name__", "job"))
              for job in _background(scheduler)]
    # Everything loaded so far (modules, the app, the channels) lives as long as the process:
    # kept out of the collector's full passes. At 1,000 WeCom volunteers those paused the event
    # loop 1.23 s in a run (the longest 176 ms); frozen, 0.64 s (longest 112 ms), in a trial of
    # benchmarks/wecom_load.py.
    gc.freeze()
    log.info("running channels=%s http=%s:%s", [c.name for c in channels], host, port)
    await stop.wait()
    for channel in channels:
        await channel.stop()
    if shared is not None:
        await shared.close()
    server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await app.db.adispose()
    return 0
