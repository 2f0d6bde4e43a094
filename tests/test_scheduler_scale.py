"""The scheduler at scale: jobs run off the event loop, and a tick that stops half-way resumes.

A tick writes the morning digests township by township, one transaction each. If it stops
(the process is killed, a database error) after some townships, the next tick writes exactly
the digests that are missing: the same digests an uninterrupted tick writes, none twice.
`warmline run` runs the jobs in a process of its own (bot/care/job_process.py): a real child
process here, killed as a crash would kill it, replaced on the next tick, and ended with its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text

from bot.app import App
from bot.care import reminders, scheduler
from bot.care.job_process import JobProcess, JobProcessDied
from bot.care.reminders import plan_reminders
from bot.config import ConfigError, load_settings
from dialogs.services import FixedClock
from storage.db import sqlite_file
from storage.models import ActionToken, OutboxMessage
from tests.conftest import SHANGHAI, TEST_DATA_KEY

MORNING = datetime(2026, 11, 27, 8, 30, tzinfo=SHANGHAI)


def digest_texts(app: App) -> dict[str, str]:
    with app.db.session() as session:
        return {key: payload["text"] for key, payload in session.execute(
            select(OutboxMessage.idempotency_key, OutboxMessage.payload)
            .where(OutboxMessage.kind == reminders.DIGEST_KIND))}


def forget_digests(app: App) -> None:
    with app.db.session() as session:
        session.execute(delete(OutboxMessage).where(OutboxMessage.kind == reminders.DIGEST_KIND))
        session.execute(delete(ActionToken))


async def test_a_tick_that_stops_half_way_is_completed_by_the_next(county: App,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reminders, "GROUP_HOUSEHOLDS", 0)  # a group per township: this county is small
    await plan_reminders(county, MORNING)
    expected = digest_texts(county)
    assert len(expected) >= 3
    forget_digests(county)

    real = reminders.iter_batches
    calls: list[object] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("township_id"))
        if len(calls) == 2:  # the second township: the process "dies" here
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(reminders, "iter_batches", failing)
    with pytest.raises(RuntimeError):
        await plan_reminders(county, MORNING)
    partial = digest_texts(county)
    assert 0 < len(partial) < len(expected)  # the first township's digests were committed

    monkeypatch.setattr(reminders, "iter_batches", real)
    resumed = await plan_reminders(county, MORNING)
    assert resumed.digests == len(expected) - len(partial)
    assert resumed.skipped_existing == len(partial)
    assert digest_texts(county) == expected  # the same digests, none twice


async def test_jobs_run_in_their_own_thread_while_the_loop_keeps_answering(
        county: App, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that holds its thread for a second does not hold the event loop."""
    county.settings.raw["scheduler"]["jobs_in"] = "thread"  # the default is a process (tests below)
    seen: dict[str, Any] = {}

    async def slow(app: App, at: datetime) -> int:
        seen["thread"] = threading.current_thread()
        seen["other_db"] = app.db is not county.db
        time.sleep(1.0)  # planning a province: CPU work that never awaits
        seen["done"] = True
        return 0

    monkeypatch.setattr(scheduler, "JOBS", [scheduler.Job("slow", slow)])
    clock.set(datetime.combine(date(2026, 11, 30), datetime.min.time(), SHANGHAI))
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run_scheduler(county, {}, stop))
    beats = 0
    while "done" not in seen:
        await asyncio.sleep(0.01)
        if "thread" in seen:
            beats += 1  # the loop ran while the job was busy
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert seen["thread"] is not threading.main_thread() and seen["other_db"]
    assert beats >= 20


def tokens_in_payloads(app: App) -> tuple[list[str], set[str]]:
    """The button tokens the outbox's messages carry, and the tokens stored."""
    with app.db.session() as session:
        carried = [option["token"] for (payload,) in session.execute(select(OutboxMessage.payload))
                   for option in payload.get("options") or [] if option.get("token")]
        stored = set(session.scalars(select(ActionToken.token)))
    return carried, stored


@contextlib.contextmanager
def writes_blocked(app: App) -> Iterator[None]:
    """Another connection holds the outbox so no one else can write to it (SQLite: the database's
    write lock; PostgreSQL: a SHARE lock on the table) until the block ends."""
    path = sqlite_file(app.db.url)
    if path is not None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with app.db.session() as session:
        session.execute(text("LOCK TABLE outbox IN SHARE MODE"))
        yield
        session.rollback()


async def expected_digests(app: App) -> dict[str, str]:
    """The digests a tick at MORNING writes (planned in this process, then removed again)."""
    await plan_reminders(app, MORNING)
    expected = digest_texts(app)
    forget_digests(app)
    return expected


async def test_jobs_run_in_a_process_of_their_own(county: App) -> None:
    expected = await expected_digests(county)
    jobs = JobProcess(county)
    try:
        results = await jobs.run(MORNING)
        child = jobs.pid
        assert child is not None and child != os.getpid()
        assert results["reminders"].digests == len(expected)
        assert digest_texts(county) == expected
        again = await jobs.run(MORNING)  # the same process serves the next tick: nothing twice
        assert jobs.pid == child and again["reminders"].digests == 0
    finally:
        await jobs.close()
    assert jobs.pid is None


async def test_a_job_process_killed_mid_tick_is_replaced_and_the_next_tick_completes_its_work(county: App) -> None:
    expected = await expected_digests(county)
    jobs = JobProcess(county)
    try:
        with writes_blocked(county):  # the tick cannot finish: it waits to write its digests
            tick = asyncio.create_task(jobs.run(MORNING))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if jobs.pid is not None:
                    break
            first = jobs.pid
            assert first is not None
            await asyncio.sleep(1.0)  # well into the tick: planning, or waiting to write
            os.kill(first, signal.SIGKILL)  # killed as by the OOM killer: no chance to clean up
            with pytest.raises(JobProcessDied):
                await asyncio.wait_for(tick, 30)
            assert jobs.pid is None
        assert digest_texts(county) == {}  # nothing half-written
        results = await jobs.run(MORNING)  # a new process, which does the whole tick
        assert jobs.starts == 2 and jobs.pid not in (None, first)
        assert results["reminders"].digests == len(expected)
    finally:
        await jobs.close()
    assert digest_texts(county) == expected  # none lost, none twice
    carried, stored = tokens_in_payloads(county)
    assert len(carried) == len(set(carried)) and set(carried) == stored  # each button once, no orphans


def test_the_job_process_ends_with_its_parent(county: App, tmp_path: Path) -> None:
    """A `warmline run` that is killed outright leaves no job process behind."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import asyncio\n"
        "from bot.app import build_app\n"
        "from bot.care.job_process import JobProcess\n"
        "from bot.config import load_settings\n"
        f"app = build_app(load_settings(db={county.db.url!r}, env={{'WARMLINE_DATA_KEY': {TEST_DATA_KEY!r}}}))\n"
        "async def main():\n"
        "    jobs = JobProcess(app)\n"
        "    await jobs.start()\n"
        "    print(jobs.pid, flush=True)\n"
        "    await asyncio.sleep(120)\n"
        "asyncio.run(main())\n")
    root = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
    finally:
        parent.kill()


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_where_the_jobs_run_is_checked_when_the_settings_are_read(tmp_path: Path) -> None:
    config = tmp_path / "county.toml"
    config.write_text('[scheduler]\njobs_in = "fork"\njob_process_nice = 40\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(db=f"sqlite:///{tmp_path / 'w.db'}", config=str(config), env={})
    message = str(raised.value)
    assert "jobs_in" in message and '"process"' in message and '"thread"' in message
    assert "job_process_nice" in message
    config.write_text('[scheduler]\njobs_in = "thread"\n', encoding="utf-8")
    settings = load_settings(db=f"sqlite:///{tmp_path / 'w.db'}", config=str(config), env={})
    assert settings.section("scheduler")["jobs_in"] == "thread"


async def test_townships_planned_one_by_one_or_in_groups_write_the_same_digests(
        county: App, monkeypatch: pytest.MonkeyPatch) -> None:
    together = await expected_digests(county)  # this small county: one group
    monkeypatch.setattr(reminders, "GROUP_HOUSEHOLDS", 0)
    await plan_reminders(county, MORNING)
    assert digest_texts(county) == together and len(together) >= 3


def test_townships_are_grouped_in_order_by_households() -> None:
    sizes = {1: 30_000, 2: 5_000, 3: 5_000, 4: 5_000, 5: 0, 6: 1, 7: 12_000}
    groups = reminders._groups([1, 2, 3, 4, 5, 6, 7], sizes)
    # at most 12,500 households a group, in order; a bigger township alone
    assert groups == [[1], [2, 3], [4, 5, 6], [7]]
    assert reminders._groups([], {}) == []
