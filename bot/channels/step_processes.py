"""Telegram steps in several processes: one poller, each chat always in the same process.

Why: a `warmline run` process is one Python interpreter, and under load its steps are bound by
one core (about 2.1–2.5 ms of CPU a step on PostgreSQL, BENCHMARKS.md). Telegram hands a bot's
updates to one poller only, so more `warmline run` processes cannot share them; instead the
poller shares them out. With `[core] step_processes = N` (PostgreSQL only) it starts N - 1
helper processes, and every update goes to the process its chat belongs to (a hash of the chat
id): the poller's own, or one helper's. Each process runs its chats' steps as before — one
chat's updates one after another, in arrival order, its share of `max_concurrent_steps` at
once — and sends their replies itself (the outbox fast path, with its own claimer id and
heartbeat). On two cores shared with PostgreSQL, two processes kept the reply-time targets where
one missed them (BENCHMARKS.md, sixth round).

The polling offset rule holds across processes: an update is confirmed to Telegram only after
the process that ran it says its step is done. A helper that dies loses nothing: it is started
again and given its unfinished updates again, in order (the runner's dedupe on update_id keeps
each step once). A helper that cannot start at all (it fails before it says it is ready, or
takes longer than START_WITHIN) is not waited for: the poller runs its chats itself.

The pipe protocol is lines. Poller → helper's stdin: one update as Telegram sent it (JSON).
Helper → poller, on the helper's stdout: `ready` once it can take updates, then the update_id
of each update whose step is done, and `hold <seconds>` when one of its sends met a 429: the
poller's delivery worker sends the bulk (broadcasts, greetings), and holds it off that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.channels.dispatch import STOP_GRACE_SECONDS, max_concurrent_steps
from storage import outbox
from storage.db import is_sqlite

if TYPE_CHECKING:
    from bot.app import App
    from bot.channels.telegram import TelegramChannel

log = logging.getLogger("warmline.steps")

SETTINGS_KEY = "step_processes"  # in [core]
AUTO = 0  # the default: as many as the machine allows (`step_processes`)
# What "as many as the machine allows" stops at: two processes were measured on two cores with
# PostgreSQL on the same machine (BENCHMARKS.md); a county with more cores may set more.
AUTO_MAX = 2
READY = b"ready"
HOLD = b"hold "  # `hold <seconds>`: a helper's send met a 429 (bulk sends are the poller's)
LINE_LIMIT = 4 * 1024 * 1024  # one update per line; Telegram's largest is far below
START_WITHIN = 60.0  # seconds a helper may take to say it is ready before its chats run here
RESTART_DELAY = 0.5  # before a helper that died is started again (doubling while it dies
# without finishing an update: one update that kills it each time is not retried in a tight loop)
RESTART_DELAY_MAX = 30.0


def configured(settings: Any) -> int:
    """`[core] step_processes` as written (bot/defaults/core.toml): 0 is "as the machine allows"."""
    try:
        return max(0, int(settings.section("core").get(SETTINGS_KEY, AUTO)))
    except (TypeError, ValueError):
        return AUTO


def step_processes(settings: Any, url: str) -> int:
    """How many processes run Telegram's steps: always 1 on SQLite (one file, one writer at a
    time: more processes would only wait on its lock); by default on PostgreSQL one per core,
    at most AUTO_MAX."""
    if is_sqlite(url):
        return 1
    return configured(settings) or min(AUTO_MAX, cores())


def steps_per_process(settings: Any, url: str) -> int:
    """Telegram steps one process runs at once: `[core] max_concurrent_steps` is shared out, so
    the database sees as many connections at work as with one process."""
    return max(1, -(-max_concurrent_steps(settings) // step_processes(settings, url)))


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def raw_chat_key(data: dict[str, Any]) -> str:
    """The dispatcher key of an update as Telegram sent it, the same as `telegram.chat_key`
    of the parsed update: the poller shares updates out without parsing them (the process
    that runs the step parses it)."""
    holder = data.get("message") or data.get("edited_message")
    if holder is None and isinstance(query := data.get("callback_query"), dict):
        holder = query.get("message")
    chat = holder.get("chat") if isinstance(holder, dict) else None
    if isinstance(chat, dict) and chat.get("id") is not None:
        return str(chat["id"])
    return f"update:{data.get('update_id')}"


def owner(key: str, count: int) -> int:
    """Which process runs this key's steps (0: the poller): the same on every call and run."""
    return zlib.crc32(key.encode()) % count


Finished = Callable[[], None]


@dataclass
class _Helper:
    index: int
    process: asyncio.subprocess.Process | None = None
    pending: dict[int, tuple[bytes, Finished]] = field(default_factory=dict)  # uid → line, done
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    given_up: bool = False  # could not start: its chats run in the poller
    reader: asyncio.Task[None] | None = None
    delay: float = RESTART_DELAY


class StepProcesses:
    """The poller's side: the helpers, what each was given, and who is done."""

    def __init__(self, count: int, argv: Sequence[str], run_here: Callable[[dict[str, Any], Finished], None],
                 hold_bulk: Callable[[float], None], *, start_within: float = START_WITHIN,
                 environment: Mapping[str, str] | None = None) -> None:
        if count < 2:
            raise ValueError("step processes need at least one helper")
        self.count = count
        self.argv = list(argv)
        self.run_here = run_here  # the poller's own dispatch, for the chats of a helper given up
        self.hold_bulk = hold_bulk  # a 429 a helper met: this process's bulk sends wait it out
        self.environment = dict(environment or {})  # variables a helper gets beside ours
        self.start_within = start_within
        self._helpers = [_Helper(i) for i in range(1, count)]
        self._closing = False

    @property
    def pids(self) -> list[int]:
        return [h.process.pid for h in self._helpers if h.process is not None and h.process.returncode is None]

    async def start(self) -> None:
        """Start every helper and wait until each is ready (or given up)."""
        for helper in self._helpers:
            await self._spawn(helper)
        await asyncio.gather(*(self._until_ready(h) for h in self._helpers))

    def submit(self, data: dict[str, Any], key: str, finished: Finished) -> bool:
        """Give the update to the process its chat belongs to; False: it runs here."""
        index = owner(key, self.count)
        if index == 0:
            return False
        helper = self._helpers[index - 1]
        if helper.given_up:
            return False
        line = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        helper.pending[int(data["update_id"])] = (line, finished)
        self._write(helper, line)
        return True

    async def close(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """No more updates: each helper finishes what it holds (within `grace`) and ends."""
        self._closing = True
        for helper in self._helpers:
            if helper.process is not None and helper.process.stdin is not None:
                with contextlib.suppress(Exception):
                    helper.process.stdin.close()
        await asyncio.gather(*(self._ended(h, grace) for h in self._helpers))

    # ------------------------------------------------------------------ helpers

    async def _spawn(self, helper: _Helper) -> None:
        helper.ready.clear()
        try:
            env = {**os.environ, **self.environment} if self.environment else None
            helper.process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
                env=env)
        except OSError as exc:
            log.error("step process %d could not start error=%s; its chats run here", helper.index,
                      type(exc).__name__)
            self._give_up(helper)
            return
        helper.reader = asyncio.create_task(self._read(helper), name=f"steps-{helper.index}")

    async def _until_ready(self, helper: _Helper) -> None:
        if helper.given_up:
            return
        try:
            await asyncio.wait_for(helper.ready.wait(), self.start_within)
        except TimeoutError:
            log.error("step process %d not ready within %.0fs; its chats run here", helper.index,
                      self.start_within)
            self._give_up(helper)
            if helper.process is not None and helper.process.returncode is None:
                helper.process.kill()

    def _write(self, helper: _Helper, line: bytes) -> None:
        process = helper.process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return  # it is being started again: `pending` is given to the new one
        process.stdin.write(line)

    async def _read(self, helper: _Helper) -> None:
        process = helper.process
        assert process is not None and process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except (ValueError, OSError):  # a line past the limit: a helper out of step
                break
            if not line:
                break
            text = line.strip()
            if text == READY:
                helper.ready.set()
                continue
            if text.startswith(HOLD):
                with contextlib.suppress(ValueError):
                    self.hold_bulk(float(text[len(HOLD):]))
                continue
            with contextlib.suppress(ValueError):
                entry = helper.pending.pop(int(text), None)
                if entry is not None:
                    helper.delay = RESTART_DELAY  # it works: a later death restarts it at once
                    entry[1]()
        code = await process.wait()
        if self._closing or helper.given_up:
            return
        if not helper.ready.is_set():
            log.error("step process %d ended before it was ready code=%s; its chats run here",
                      helper.index, code)
            self._give_up(helper)
            return
        log.error("step process %d ended code=%s; starting it again with %d updates unfinished",
                  helper.index, code, len(helper.pending))
        await asyncio.sleep(helper.delay)
        helper.delay = min(RESTART_DELAY_MAX, helper.delay * 2)
        if self._closing:
            return
        await self._spawn(helper)
        for line, _finished in list(helper.pending.values()):  # oldest first, as they came
            self._write(helper, line)
        await self._until_ready(helper)

    def _give_up(self, helper: _Helper) -> None:
        """Its chats, and what it was given, run in the poller from now on (in order)."""
        helper.given_up = True
        helper.ready.set()
        pending, helper.pending = helper.pending, {}
        for line, finished in pending.values():
            self.run_here(json.loads(line), finished)

    async def _ended(self, helper: _Helper, grace: float) -> None:
        process = helper.process
        if process is None:
            return
        try:
            await asyncio.wait_for(process.wait(), grace + 5.0)
        except TimeoutError:
            log.warning("step process %d did not stop in time; killed", helper.index)
            process.kill()
            await process.wait()
        if helper.reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await helper.reader


def helper_argv(db: str | None, config: str | None, verbose: bool) -> list[str]:
    """The command line of a helper: `warmline run --step-process` with the poller's options."""
    argv = [sys.executable, "-m", "bot.cli", "run", "--step-process"]
    if db:
        argv += ["--db", db]
    if config:
        argv += ["--config", config]
    if verbose:
        argv.append("-v")
    return argv


# ---------------------------------------------------------------------- a helper's side


async def serve_steps(app: App, telegram: TelegramChannel, heartbeat: float) -> int:
    """A helper: take updates from stdin, run their steps, say on stdout when each is done.

    Ctrl-C in a terminal reaches every process of the group: a helper leaves stopping to the
    poller, which closes its stdin once it stops polling. SIGTERM stops it the same way.
    """
    loop = asyncio.get_running_loop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    # the protocol keeps stdout to itself: anything printed goes to stderr with the logs
    protocol = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(text: str) -> None:
        os.write(protocol, text.encode() + b"\n")

    telegram.sender().on_refused = lambda seconds: say(f"{HOLD.decode()}{seconds}")
    await app.db.open_pool()
    say(READY.decode())  # updates may come now: they wait in the pipe until the bot is connected
    beats = asyncio.create_task(_heartbeats(app, heartbeat, stop))
    work = asyncio.create_task(_connect_and_feed(reader, telegram, say))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)  # EOF or SIGTERM
    for task in (work, stopping):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await telegram.stop()  # the steps under way finish (within the grace), the rest come again
    stop.set()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await beats
    try:
        async with app.db.async_session() as session:
            await outbox.end_lease(session, outbox.this_process())
    except Exception as exc:  # the lease lapses by itself
        log.warning("step process could not end its lease error=%s", type(exc).__name__)
    await app.db.adispose()
    os.close(protocol)
    return 0


async def _connect_and_feed(reader: asyncio.StreamReader, telegram: TelegramChannel,
                            say: Callable[[str], None]) -> None:
    """This process's own getMe first (the poller is connected already), then every update
    the poller gives, until it closes the pipe."""
    await telegram.connect(remember_name=False)
    while line := await reader.readline():
        try:
            data = json.loads(line)
            uid = int(data["update_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("step process: a line that is not an update was skipped")
            continue
        telegram.run_update(data, lambda uid=uid: say(str(uid)))


async def _heartbeats(app: App, every: float, stop: asyncio.Event) -> None:
    """This process's lease: the replies its fast path claimed stay its own while it lives,
    and come back to the queue within `lease_seconds` if it dies (as the delivery worker's)."""
    while not stop.is_set():
        try:
            async with app.db.async_session() as session:
                await outbox.heartbeat(session, outbox.this_process())
        except Exception as exc:
            log.warning("step process heartbeat failed error=%s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
