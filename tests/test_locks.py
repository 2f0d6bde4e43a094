"""One leader among processes sharing a database: only one scheduler plans, and a dead leader is
replaced (PostgreSQL: at once, by the advisory lock; SQLite: when its lease runs out)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from bot.app import App
from bot.care import scheduler
from dialogs.engine.runner import Runner
from dialogs.registry import ALL_DIALOGS
from dialogs.services import FixedClock
from storage.db import Database
from storage.locks import LeaderLock, leadership


def _db(app: App) -> Database:
    """Another process's view of the same database: its own engine and connections."""
    return Database(app.db.url, app.db.keyring)


async def test_only_one_leader_and_release_hands_over(app: App, clock: FixedClock) -> None:
    other_db = _db(app)
    first = LeaderLock(app.db, "scheduler", now=clock.now)
    second = LeaderLock(other_db, "scheduler", now=clock.now)
    try:
        assert await first.try_acquire()
        assert not await second.try_acquire()
        assert await first.renew()  # renewing what it holds
        assert not await second.try_acquire()
        another = LeaderLock(other_db, "another-job", now=clock.now)
        assert await another.try_acquire()  # one leader per name
        await another.release()
        await first.release()
        assert await second.try_acquire()
        assert not await first.try_acquire()
    finally:
        await second.release()
        await other_db.adispose()


async def test_a_dead_leader_is_replaced(app: App, clock: FixedClock) -> None:
    dead_db = _db(app)
    dead = LeaderLock(dead_db, "scheduler", ttl=timedelta(minutes=3), now=clock.now)
    survivor = LeaderLock(app.db, "scheduler", ttl=timedelta(minutes=3), now=clock.now)
    assert await dead.try_acquire()
    if app.db.url.startswith("postgresql"):
        # the leader's connection is gone (its process died, or the network dropped it)
        with app.db.session() as session:
            killed = session.scalar(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'"
                " AND granted AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"))
        assert killed == 1
        assert await survivor.try_acquire()  # the server freed the advisory lock at once
        assert not await dead.renew()  # and the old leader notices it no longer leads
    else:
        await dead_db.adispose()  # the process is gone: it renews nothing
        assert not await survivor.try_acquire()  # its lease still runs
        clock.advance(minutes=3, seconds=1)
        assert await survivor.try_acquire()
    await survivor.release()
    await dead.release()
    await dead_db.adispose()


async def test_two_schedulers_plan_once(app: App, clock: FixedClock, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """Two `warmline run` processes on one database: every tick runs the jobs in one of them."""
    caplog.set_level(logging.INFO, "warmline.locks")
    ticks: list[str] = []

    async def count(application: App, at: datetime) -> int:
        # jobs run on a copy of the app with its own database (bot/care/scheduler.py JobThread);
        # each process's copy keeps that process's runner
        ticks.append("app" if application.runner is app.runner else "other")
        return 0

    monkeypatch.setattr(scheduler, "JOBS", [scheduler.Job("count", count)])
    app.settings.raw.setdefault("scheduler", {})["interval_seconds"] = 0.05
    app.settings.raw["scheduler"]["jobs_in"] = "thread"  # the patched job exists in this process only
    other_db = _db(app)
    other = App(settings=app.settings, db=other_db, services=app.services,
                runner=Runner(other_db, app.services, ALL_DIALOGS))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(scheduler.run_scheduler(a, {}, stop)) for a in (app, other)]
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    await other_db.adispose()
    assert len(ticks) >= 3
    assert len(set(ticks)) == 1  # always the same process led


async def test_leadership_block_releases_on_error(app: App, clock: FixedClock) -> None:
    with pytest.raises(RuntimeError):
        async with leadership(app.db, "scheduler", now=clock.now) as lock:
            assert await lock.try_acquire()
            raise RuntimeError("job crashed")
    after = LeaderLock(app.db, "scheduler", now=clock.now)
    assert await after.try_acquire()
    await after.release()
