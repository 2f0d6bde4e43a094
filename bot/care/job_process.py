"""The scheduler's jobs in a process of their own, started and supervised by `warmline run`.

Why a process: a tick at province scale is seconds of CPU-bound Python (planning, routing,
writing digests). In a thread of the web process it shares one interpreter lock with the HTTP
server, so /healthz and the webhooks wait for the tick's bytecode between their own steps; in
a process of its own it only shares the CPU, which the kernel divides finely — and the job
process runs at a lower priority (`[scheduler] job_process_nice`), so a webhook that wakes up
gets the CPU first.

How: `JobProcess` starts `python -m bot.care.job_process` on the first tick with a socket
pair between them, hands it the settings once, then sends one instant per tick and waits for
the counts. The child has its own `Database` (its own connections) and a clock that starts at
the tick's instant. It dies with its parent (PR_SET_PDEATHSIG on Linux, and it exits when the
socket closes). If it dies mid-tick (killed, out of memory) the tick reports a failure and the
next tick starts a new one, which resumes: every job is idempotent per chunk (the digests'
idempotency keys), so nothing already written is written again and nothing is lost.

Messages are pickled objects behind a 4-byte length: both ends are this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import socket
import struct
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.scheduler")
_HEADER = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1
STOP_GRACE = 5.0  # seconds a stopping child gets before it is killed
_ROOT = str(Path(__file__).resolve().parent.parent.parent)


class JobFailed(Exception):
    """A job's exception as the parent sees it: only its type's name (never personal data)."""


class JobProcessDied(Exception):
    """The job process ended before it answered (killed, crashed); the next tick starts another."""


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def _portable(results: dict[str, Any]) -> dict[str, Any]:
    """Results the parent can unpickle: exceptions become `JobFailed(type name)`."""
    out: dict[str, Any] = {}
    for name, result in results.items():
        if isinstance(result, BaseException):
            out[name] = JobFailed(type(result).__name__)
            continue
        try:
            pickle.dumps(result)
            out[name] = result
        except Exception:
            out[name] = repr(result)
    return out


class JobProcess:
    """The parent's side: one child at a time, started when a tick needs it, restarted after it dies."""

    def __init__(self, app: App, nice: int = 10) -> None:
        self.app = app
        self.nice = nice
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.starts = 0  # how many children were started (the first, then one per restart)
        self._busy = False
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def start(self) -> None:
        """Start a child and hand it the settings (`run` does it when there is none)."""
        ours, theirs = socket.socketpair()
        # the child imports this very code, wherever the parent found it
        path = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.care.job_process", str(theirs.fileno()), str(os.getpid()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": path})
        finally:
            theirs.close()
        self._reader, self._writer = await asyncio.open_connection(sock=ours)
        self.starts += 1
        settings = self.app.settings
        self._writer.write(_frame({"settings": settings, "url": self.app.db.url, "nice": self.nice,
                                   "log_level": logging.getLogger().getEffectiveLevel()}))
        await self._writer.drain()
        log.info("job process started pid=%s", self.proc.pid)

    async def run(self, at: datetime) -> dict[str, Any]:
        """One tick in the job process; a child that dies meanwhile fails this tick, not the next."""
        if self.proc is None or self.proc.returncode is not None:
            await self._discard()
            await self.start()
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        self._busy = True
        try:
            writer.write(_frame({"at": at}))
            await writer.drain()
            size = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
            return dict(pickle.loads(await reader.readexactly(size)))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            stopping = self._stopping
            code = await self._discard()
            if stopping:
                log.info("job process stopped mid-tick; the next start resumes its work")
            else:
                log.error("job process ended mid-tick exit=%s; the next tick starts another and resumes", code)
            raise JobProcessDied(f"exit {code}") from exc
        finally:
            self._busy = False

    async def _discard(self) -> int | None:
        """Forget the current child: close the socket, make sure it has ended; its exit code."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        try:
            return await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            proc.kill()
            return await proc.wait()

    async def close(self) -> None:
        """Stop the child: at once if it is mid-tick (the next start resumes), else when it has
        closed its database connections."""
        proc = self.proc
        if proc is not None and proc.returncode is None and self._busy:
            self._stopping = True
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await self._discard()
        finally:
            self._stopping = False


# ------------------------------------------------------------------------- the child


class _TickClock:
    """Now, as the parent sees it: the tick's instant, running on from when it arrived."""

    def __init__(self) -> None:
        self._start = datetime.now(UTC)
        self._origin = monotonic()

    def begin(self, at: datetime) -> None:
        self._start, self._origin = at.astimezone(UTC), monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=monotonic() - self._origin)


def _die_with(parent: int) -> None:
    """Ask Linux to end this process when its parent ends (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent ended before the request was made
        os._exit(0)


def _read(sock: socket.socket) -> Any:
    def exactly(n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = sock.recv(left)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    return pickle.loads(exactly(_HEADER.unpack(exactly(_HEADER.size))[0]))


def child(fd: int, parent: int) -> int:
    """The job process: read the settings, then run one tick per instant received until EOF."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    sock = socket.socket(fileno=fd)
    try:
        hello = _read(sock)
    except EOFError:
        return 0
    logging.basicConfig(level=hello["log_level"], format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(OSError):
        os.nice(int(hello["nice"]))
    from bot.app import build_app
    from bot.care.scheduler import run_jobs
    from storage.db import Database

    clock = _TickClock()
    app = build_app(hello["settings"], clock=clock)
    if hello["url"] != app.db.url:
        app = replace(app, db=Database(hello["url"], keyring=app.db.keyring))
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                at = _read(sock)["at"]
            except EOFError:
                break
            clock.begin(at)
            results = loop.run_until_complete(run_jobs(app, at))
            sock.sendall(_frame(_portable(results)))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(app.db.adispose())
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(child(int(sys.argv[1]), int(sys.argv[2])))
