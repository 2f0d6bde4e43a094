"""Delivery under faults: a flaky platform, a database that goes away, workers racing, and
workers killed with SIGKILL mid-broadcast. Every test counts messages at the fake platform."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from bot.app import App
from bot.delivery.outcome import RetryPolicy
from bot.delivery.ratelimit import RateLimiter
from bot.delivery.worker import DeliveryWorker, WorkerSettings
from dialogs.services import FixedClock
from storage.db import Database
from storage.models import OutboxStatus
from tests.conftest import TEST_DATA_KEY
from tests.fakes.outbox import add_messages, rows, statuses
from tests.fakes.platform import FakePlatform
from tests.fakes.sender import FakePlatformSender
from tests.fakes.tcpproxy import TcpProxy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    server = FakePlatform().start()
    yield server
    server.close()


@pytest.fixture
async def sender(platform: FakePlatform) -> AsyncIterator[FakePlatformSender]:
    client = FakePlatformSender(platform.url, timeout=0.5)
    yield client
    await client.aclose()


def clocked_worker(app: App, clock: FixedClock, sender: FakePlatformSender,
                   **settings: object) -> DeliveryWorker:
    """A worker whose rate-limit pauses also run on the test's program clock."""
    return DeliveryWorker(app.db, {sender.channel: sender}, now=app.services.now,
                          limiter=RateLimiter(now=lambda: clock.now().timestamp()),
                          settings=WorkerSettings(**settings))  # type: ignore[arg-type]


# ------------------------------------------------------------------ a flaky platform

async def test_5xx_is_retried_with_growing_backoff_then_delivered_once(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    [row_id] = add_messages(app.db, 1, now=clock.now(), prefix="five")
    platform.fail_next(2, status=503)
    worker = clocked_worker(app, clock, sender)

    delays = []
    for _ in range(2):
        start = clock.now()
        await worker.run_once()
        [row] = rows(app.db, [row_id])
        assert row.status == OutboxStatus.QUEUED and row.last_error == "http 503"
        delays.append((row.next_attempt_at - start).total_seconds())
        await worker.run_once()  # not due yet: not tried again
        clock.set(row.next_attempt_at)
    await worker.run_once()

    assert 1.5 <= delays[0] <= 2.5 and 3.0 <= delays[1] <= 5.0  # 2 s, then 4 s, ± jitter
    assert platform.requests == 3 and platform.count() == 1
    [row] = rows(app.db, [row_id])
    assert row.status == OutboxStatus.SENT and row.attempts == 3


async def test_429_retry_after_holds_the_row_and_pauses_the_channel(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    ids = add_messages(app.db, 3, now=clock.now(), prefix="flood")
    platform.fail_next(1, status=429, retry_after=30)
    worker = clocked_worker(app, clock, sender, concurrency=1)
    start = clock.now()

    await worker.run_once()
    first, *others = rows(app.db, ids)
    assert platform.requests == 1  # the channel paused: the others were not tried into the 429
    assert first.status == OutboxStatus.QUEUED and first.attempts == 1
    assert first.next_attempt_at >= start + timedelta(seconds=30)
    assert all(r.status == OutboxStatus.QUEUED and r.attempts == 0 for r in others)
    assert all(r.next_attempt_at >= start + timedelta(seconds=29) for r in others)

    clock.advance(seconds=20)
    await worker.run_once()
    assert platform.count() == 0  # still within retry_after

    clock.advance(seconds=11)
    await worker.run_once()
    assert sorted(platform.chats()) == ["flood-0", "flood-1", "flood-2"]
    assert statuses(app.db, ids) == {OutboxStatus.SENT: 3}


async def test_short_retry_after_is_waited_out_within_the_round(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    add_messages(app.db, 3, now=clock.now(), prefix="brief")
    platform.fail_next(1, status=429, retry_after=0.4)
    worker = DeliveryWorker(app.db, {"fake": sender}, now=app.services.now,
                            settings=WorkerSettings(concurrency=1))
    started = time.monotonic()
    await worker.run_once()
    assert platform.count() == 2
    assert min(r.at for r in platform.received) - started >= 0.38  # nobody sent during the pause


async def test_timeouts_are_retried(app: App, clock: FixedClock, platform: FakePlatform,
                                    sender: FakePlatformSender) -> None:
    [row_id] = add_messages(app.db, 1, now=clock.now(), prefix="slow")
    platform.fail_next(1, hang=1.0)  # longer than the sender's 0.5 s timeout
    worker = clocked_worker(app, clock, sender)
    await worker.run_once()
    [row] = rows(app.db, [row_id])
    assert row.status == OutboxStatus.QUEUED and row.last_error == "timeout"
    clock.set(row.next_attempt_at)
    await worker.run_once()
    assert platform.count() == 1
    assert statuses(app.db, [row_id]) == {OutboxStatus.SENT: 1}


async def test_quota_exhausted_waits_as_long_as_the_platform_says(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    ids = add_messages(app.db, 2, now=clock.now(), prefix="quota")
    platform.fail_next(1, quota=True, retry_after=600)
    worker = clocked_worker(app, clock, sender, concurrency=1)
    start = clock.now()
    await worker.run_once()
    assert platform.requests == 1
    assert all(r.next_attempt_at >= start + timedelta(seconds=599) for r in rows(app.db, ids))
    clock.advance(seconds=300)
    await worker.run_once()
    assert platform.requests == 1
    clock.advance(seconds=301)
    await worker.run_once()
    assert platform.count() == 2


async def test_gives_up_after_max_attempts_and_says_why(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    [row_id] = add_messages(app.db, 1, now=clock.now(), prefix="doomed")
    platform.fail_next(10, status=500)
    worker = clocked_worker(app, clock, sender, policy=RetryPolicy(max_attempts=3))
    for _ in range(5):
        await worker.run_once()
        clock.advance(minutes=20)
    [row] = rows(app.db, [row_id])
    assert platform.requests == 3 and platform.count() == 0
    assert row.status == OutboxStatus.FAILED
    assert row.last_error == "gave up after 3 attempts: http 500"


async def test_a_retry_that_would_land_after_the_window_expires_instead(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    [row_id] = add_messages(app.db, 1, now=clock.now(), prefix="window", kind="reminder",
                            expires_at=clock.now() + timedelta(seconds=1))
    platform.fail_next(1, status=502)
    worker = clocked_worker(app, clock, sender)
    await worker.run_once()
    clock.advance(minutes=5)
    await worker.run_once()
    assert platform.count() == 0
    assert statuses(app.db, [row_id]) == {OutboxStatus.EXPIRED: 1}


# ------------------------------------------------------- the database goes away

def _outage(db_url: str, keyring: Any) -> tuple[Database, Callable[[], None], Callable[[], None], Callable[[], None]]:
    """A Database for the worker, and how to take its database away and bring it back.

    PostgreSQL: the worker connects through a TCP proxy that cuts every connection.
    SQLite: another process-level connection holds an exclusive lock, and the worker's
    connections give up after 100 ms instead of the usual 10 s (a locked file is SQLite's
    "unavailable").
    """
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        db = Database(url.set(port=proxy.port).render_as_string(hide_password=False), keyring)
        return db, proxy.down, proxy.up, proxy.close
    db = Database(db_url, keyring)

    def short_busy_timeout(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA busy_timeout=100")
        cursor.close()

    event.listen(db.async_engine.sync_engine, "connect", short_busy_timeout)
    locker = sqlite3.connect(str(url.database), check_same_thread=False, isolation_level=None)
    return (db, lambda: locker.execute("BEGIN EXCLUSIVE"), lambda: locker.execute("COMMIT"),
            locker.close)


async def test_database_briefly_unavailable_loses_nothing_and_duplicates_nothing(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender,
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    ids = add_messages(app.db, 20, now=clock.now(), prefix="outage")
    db, cut, restore, close = _outage(db_url, app.db.keyring)

    def on_message(count: int) -> None:  # the database vanishes mid-batch, for a second
        if count == 5:
            cut()
            threading.Timer(1.0, restore).start()

    platform.on_message = on_message
    stop = asyncio.Event()
    worker = DeliveryWorker(db, {"fake": sender}, now=app.services.now, stop=stop,
                            settings=WorkerSettings(concurrency=4, batch_size=10, poll_interval=0.05))
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 20
        while statuses(app.db, ids) != {OutboxStatus.SENT: 20}:
            assert time.monotonic() < deadline, statuses(app.db, ids)
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await db.adispose()
        close()

    assert set(platform.chats().values()) == {1} and len(platform.chats()) == 20
    assert any("could not record" in r.message or "round failed" in r.message for r in caplog.records)


# ------------------------------------------------------------- workers racing

async def test_two_workers_racing_on_one_outbox_deliver_each_row_once(
        app: App, clock: FixedClock, platform: FakePlatform, db_url: str) -> None:
    ids = add_messages(app.db, 300, now=clock.now(), prefix="race")
    stop = asyncio.Event()
    workers, dbs, senders = [], [], []
    for _ in range(2):
        db = Database(db_url, app.db.keyring)  # each worker its own engine and connections, as two processes
        client = FakePlatformSender(platform.url)
        dbs.append(db)
        senders.append(client)
        workers.append(DeliveryWorker(db, {"fake": client}, now=app.services.now, stop=stop,
                                      settings=WorkerSettings(batch_size=20, poll_interval=0.02)))
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await asyncio.to_thread(platform.wait_for, 300, 30)
        deadline = time.monotonic() + 10
        while statuses(app.db, ids) != {OutboxStatus.SENT: 300}:
            assert time.monotonic() < deadline, statuses(app.db, ids)
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for client in senders:
            await client.aclose()
        for db in dbs:
            await db.adispose()

    assert platform.count() == 300
    assert set(platform.refs().values()) == {1}  # every row exactly once
    assert len({r.platform_message_id for r in rows(app.db, ids)}) == 300


# ------------------------------------------------------------ kill -9 in a loop

KILL_CONFIG = """
[delivery]
poll_interval_seconds = 0.05
stale_claim_seconds = 0.5
batch_size = 25
concurrency = 8
"""


def _standby_worker(db_url: str, platform_url: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """A worker process with its imports done, waiting for a line on stdin to start."""
    env = {**os.environ, "WARMLINE_CONFIG": str(config), "WARMLINE_DATA_KEY": TEST_DATA_KEY}
    env.pop("WARMLINE_NOW", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.worker_main", db_url, platform_url, "standby"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)


def _go(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    return proc


def test_kill_9_during_a_broadcast_loses_nothing(app: App, db_url: str, tmp_path: Path) -> None:
    """200 messages, the worker process SIGKILLed three times mid-broadcast and restarted: every
    recipient gets the message; duplicates only for rows in flight at a kill (≤ concurrency)."""
    total, kills, concurrency = 200, 3, 8
    now = app.services.now()
    ids = add_messages(app.db, total, now=now, prefix="bc")
    config = tmp_path / "worker.toml"
    config.write_text(KILL_CONFIG)
    log = tmp_path / "worker.log"
    platform = FakePlatform(delay=0.02).start()
    try:
        proc = _go(_standby_worker(db_url, platform.url, config, log))
        for k in range(kills):
            standby = _standby_worker(db_url, platform.url, config, log)
            platform.wait_for(40 * (k + 1), timeout=30)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc = _go(standby)  # the restart
        deadline = time.monotonic() + 40
        while len(platform.chats()) < total or statuses(app.db, ids) != {OutboxStatus.SENT: total}:
            assert time.monotonic() < deadline, (len(platform.chats()), statuses(app.db, ids),
                                                 log.read_text()[-2000:])
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        platform.close()

    received = platform.chats()
    assert set(received) == {f"bc-{i}" for i in range(total)}  # none lost
    duplicates = platform.count() - total
    print(f"\nkill -9 x{kills} during {total} messages: {duplicates} duplicate(s) "
          f"(bound {kills * concurrency})")
    assert duplicates <= kills * concurrency


def test_several_worker_processes_on_postgresql_one_killed_lose_nothing(
        app: App, db_url: str, tmp_path: Path) -> None:
    """The scale-out deployment: two worker processes share one PostgreSQL outbox; one is
    SIGKILLed mid-broadcast. Each row goes to one worker at a time; the other carries on."""
    if not db_url.startswith("postgresql"):
        pytest.skip("several workers share a PostgreSQL database")
    total, concurrency = 200, 8
    ids = add_messages(app.db, total, now=app.services.now(), prefix="pair")
    config = tmp_path / "worker.toml"
    config.write_text(KILL_CONFIG)
    log = tmp_path / "worker.log"
    platform = FakePlatform(delay=0.02).start()
    first = _standby_worker(db_url, platform.url, config, log)
    second = _standby_worker(db_url, platform.url, config, log)
    try:
        _go(first), _go(second)
        deadline = time.monotonic() + 30
        while min(platform.senders().get(p.pid, 0) for p in (first, second)) < 20:
            assert time.monotonic() < deadline, platform.senders()
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        deadline = time.monotonic() + 40
        while len(platform.chats()) < total or statuses(app.db, ids) != {OutboxStatus.SENT: total}:
            assert time.monotonic() < deadline, (len(platform.chats()), statuses(app.db, ids))
            time.sleep(0.1)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
        platform.close()
    assert set(platform.chats()) == {f"pair-{i}" for i in range(total)}
    duplicates = platform.count() - total
    print(f"\ntwo workers, one kill -9, {total} messages: {duplicates} duplicate(s) (bound {concurrency})")
    assert duplicates <= concurrency  # only what the killed worker had in flight
