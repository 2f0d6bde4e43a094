"""The scheduler: wakes up on the app's clock and runs every planning job once per tick.

`run_jobs(app, at)` is the one planning entry point: `warmline schedule [--at ISO]` calls it
once and exits; `warmline run` calls it every `[scheduler] interval_seconds`. Every job must be
idempotent (its outbox rows carry idempotency keys), so running a tick twice, or two processes
ticking at once, plans nothing twice — a concurrent duplicate fails on the unique key, is
logged, and finds the work already done on its next tick.

Adding a job: append a `Job(name, coroutine)` to `JOBS`; the coroutine takes `(app, at)` and
returns a small report (counts only, never personal data).

Leader election: when several `warmline run` processes share one database, only one plans —
the holder of the "scheduler" lock in `storage/locks.py` (PostgreSQL advisory lock; SQLite lease
renewed every tick). A dead leader is replaced at once on PostgreSQL, after its lease on SQLite;
the idempotency keys still guard the outbox should two ever tick at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.care.activities import reminders_job, scheduled_sends_job
from bot.care.casework import casework_job
from bot.care.family_line import family_messages_job
from bot.care.greetings import greetings_job
from bot.care.job_process import JobProcess, JobProcessDied
from bot.care.reminders import plan_reminders
from bot.message_retention import purge_bodies_job
from bot.retention import retention_job
from storage.db import Database
from storage.locks import leadership

if TYPE_CHECKING:
    from bot.app import App
    from bot.delivery.base import ChannelSender

log = logging.getLogger("warmline.scheduler")
SWITCH_INTERVAL = 0.001  # seconds (Python's default is 0.005)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[App, datetime], Awaitable[Any]]


# The planning jobs, in the order they run each tick.
JOBS: list[Job] = [
    Job("reminders", plan_reminders),  # volunteers' morning digest, coordinators' overdue digest
    Job("activity_sends", scheduled_sends_job),  # activity invitations scheduled for later
    Job("activity_reminders", reminders_job),  # the day-before reminder to those who said yes
    Job("casework", casework_job),  # insurance renewal tasks, follow-up escalation
    Job("greetings", greetings_job),  # families' opt-in greetings; delivered ones become contacts
    Job("family_messages", family_messages_job),  # answers noticed, unanswered ones escalated
    Job("purge_bodies", purge_bodies_job),  # delivered message bodies past [delivery] keep_bodies_days
    Job("retention", retention_job),  # handled message ids, old button tokens, invite failures
]


async def run_jobs(app: App, at: datetime | None = None) -> dict[str, Any]:
    """Run every job once for instant `at`; one failing job does not stop the others."""
    at = at or app.services.now()
    results: dict[str, Any] = {}
    started, cpu = time.monotonic(), time.process_time()
    for job in JOBS:
        try:
            results[job.name] = await job.run(app, at)
        except Exception as exc:  # logged without personal data; retried on the next tick
            log.error("job failed job=%s error=%s", job.name, type(exc).__name__,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            results[job.name] = exc
    # cpu: of the whole process (in a job process, the tick's own)
    log.info("tick finished seconds=%.1f cpu=%.2f failed=%d", time.monotonic() - started,
             time.process_time() - cpu, sum(isinstance(r, Exception) for r in results.values()))
    return results


class JobThread:
    """The jobs' own thread, event loop and database connections, for the life of a scheduler
    (`[scheduler] jobs_in = "thread"`; the default is a process: bot/care/job_process.py).

    Why: a tick at province scale plans hundreds of thousands of households and writes
    thousands of digests. On the web process's event loop that work would hold every webhook
    and /healthz until it ends (SQLite calls run inline on the loop). Here the loop only awaits
    a future; the work runs in this thread with a `Database` of its own (its own engine and
    connections), and the interpreter switches threads every few milliseconds, so requests
    keep being answered while a tick runs — more slowly than with a process, as both threads
    share one interpreter lock.
    """

    def __init__(self, app: App) -> None:
        self.db = Database(app.db.url, keyring=app.db.keyring)
        self.app = replace(app, db=self.db)
        # the web thread waits at most this long for the interpreter while a job computes
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="warmline-jobs", daemon=True)
        self.thread.start()

    async def run(self, at: datetime) -> dict[str, Any]:
        """One tick in the jobs' thread; the caller's loop stays free while it runs."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run_jobs(self.app, at), self.loop))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.db.adispose(), self.loop))
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self.thread.join, 10)
        if not self.thread.is_alive():
            self.loop.close()


JOBS_IN = ("process", "thread")  # where `warmline run` runs the jobs: `[scheduler] jobs_in`


def job_runner(app: App) -> JobThread | JobProcess:
    """The jobs' runner the settings choose: a process of their own (the default), or a thread."""
    section = app.settings.section("scheduler")
    where = section.get("jobs_in", "process")
    if where == "thread":
        return JobThread(app)
    if where != "process":
        raise ValueError(f"[scheduler] jobs_in must be one of {JOBS_IN}, not {where!r}")
    return JobProcess(app, nice=int(section.get("job_process_nice", 10)))


async def _tick(jobs: JobThread | JobProcess, at: datetime, stop: asyncio.Event) -> None:
    """One tick; a stop meanwhile ends a job process at once (the next start resumes its work),
    while a thread is waited for (it cannot be stopped from outside)."""
    tick = asyncio.ensure_future(jobs.run(at))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({tick, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not tick.done() and isinstance(jobs, JobProcess):
            await jobs.close()
        await tick
    except JobProcessDied:
        pass  # logged by the runner; the next tick starts a new process
    finally:
        stopping.cancel()


async def run_scheduler(app: App, senders: dict[str, ChannelSender], stop: asyncio.Event) -> None:
    """Tick until `stop` is set. Senders are not used: jobs only write the outbox.

    The lock is held from this loop; each tick's jobs run in a `JobProcess` (or a `JobThread`)."""
    interval = float(app.settings.section("scheduler").get("interval_seconds", 60))
    jobs = job_runner(app)
    log.info("scheduler started interval=%ss jobs=%s in=%s", interval, [j.name for j in JOBS],
             "process" if isinstance(jobs, JobProcess) else "thread")
    lease = timedelta(seconds=max(3 * interval, 90))  # outlives a slow tick; renewed every tick
    try:
        async with leadership(app.db, "scheduler", ttl=lease, now=app.services.now) as lock:
            while not stop.is_set():
                # only the leader plans; `stop` again, as a leader stepping down may hand over meanwhile
                if await lock.try_acquire() and not stop.is_set():
                    await _tick(jobs, app.services.now(), stop)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        await jobs.close()
    log.info("scheduler stopped")
