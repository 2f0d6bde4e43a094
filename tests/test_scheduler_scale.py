"""The scheduler at scale: jobs run off the event loop, and a tick that stops half-way resumes.

A tick writes the morning digests township by township, one transaction each. If it stops
(the process is killed, a database error) after some townships, the next tick writes exactly
the digests that are missing: the same digests an uninterrupted tick writes, none twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import date, datetime
from typing import Any

import pytest
from sqlalchemy import delete, select

from bot.app import App
from bot.care import reminders, scheduler
from bot.care.reminders import plan_reminders
from dialogs.services import FixedClock
from storage.models import ActionToken, OutboxMessage
from tests.conftest import SHANGHAI

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
