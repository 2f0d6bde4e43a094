"""Delivery under faults: a flaky platform, a database that goes away, workers racing, and
workers killed with SIGKILL mid-broadcast; and the outbox's order under them — one person's
messages first in, first out (a failed earlier message holds back the later ones, across the
fast path and the worker), replies ahead of bulk, a platform's retry_after honoured exactly, a
dead process's claimed rows back within seconds. Every test counts messages at the fake platform."""

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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.app import App
from bot.channels.telegram_sender import TelegramSender
from bot.delivery.base import RateLimit
from bot.delivery.fastpath import deliver_now
from bot.delivery.outcome import RetryPolicy
from bot.delivery.ratelimit import RateLimiter
from bot.delivery.worker import DeliveryWorker, WorkerSettings
from dialogs.engine.types import Outgoing
from dialogs.services import FixedClock
from storage import outbox
from storage.base import utcnow
from storage.db import Database
from storage.models import OutboxLane, OutboxMessage, OutboxStatus
from tests.conftest import TEST_DATA_KEY
from tests.fakes.outbox import add_messages, rows, statuses
from tests.fakes.platform import FakePlatform
from tests.fakes.sender import FakePlatformSender
from tests.fakes.tcpproxy import TcpProxy
from tests.fakes.telegram_api import FakeBotAPI

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
lease_seconds = 2
heartbeat_seconds = 0.5
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


# ------------------------------------------------- order, lanes, retry_after, leases

async def reply_row(app: App, channel: str, address: str, text: str, now: datetime) -> Outgoing:
    """A step's reply as the runner writes it: claimed by this process for the fast path."""
    async with app.db.async_session() as session:
        row = await outbox.enqueue(
            session, kind="reply", recipient=outbox.Recipient(channel, address),
            payload={"text": text, "options": []}, key=f"reply:{address}:{text}", now=now,
            claimed_by=outbox.this_process())
        assert row is not None
        return Outgoing(row.id, row.channel, row.address, row.payload)


async def test_a_later_message_waits_while_an_earlier_one_to_that_person_waits_out_a_retry(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    first = add_messages(app.db, 1, now=clock.now(), prefix="first", address="elder-1", kind="alert")
    platform.fail_next(1, status=503)
    worker = clocked_worker(app, clock, sender)
    await worker.run_once()  # the alert fails: queued again for its backoff
    assert rows(app.db, first)[0].status == OutboxStatus.QUEUED and platform.count() == 0

    later = add_messages(app.db, 1, now=clock.now(), prefix="later", address="elder-1", kind="reminder")
    other = add_messages(app.db, 1, now=clock.now(), prefix="other", address="elder-2", kind="reminder")
    await worker.run_once()
    assert platform.texts_to("elder-1") == [], "the reminder did not overtake the alert"
    assert statuses(app.db, later) == {OutboxStatus.QUEUED: 1}
    assert statuses(app.db, other) == {OutboxStatus.SENT: 1}, "other people are not held back"

    # a reply typed meanwhile also waits behind the alert, and lifts it into the reply lane
    reply = await reply_row(app, "fake", "elder-1", "reply", clock.now())
    assert await deliver_now(app.db, sender, [reply], app.services.now) == []
    assert rows(app.db, first)[0].priority == OutboxLane.INTERACTIVE
    assert statuses(app.db, [reply.outbox_id]) == {OutboxStatus.QUEUED: 1}

    clock.advance(minutes=1)  # past the alert's backoff
    for _ in range(3):
        await worker.run_once()
    assert platform.texts_to("elder-1") == ["first 第0条", "later 第0条", "reply"]
    assert statuses(app.db, [*first, *later, reply.outbox_id]) == {OutboxStatus.SENT: 3}


async def test_a_step_learns_in_its_own_transaction_whether_its_reply_is_first_in_line(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    """Written as the runner writes a step's replies: behind a digest queued to the same chat the
    reply is not first in line and goes after it; to a chat with nothing pending it is, and goes
    at once; a step's second message waits for its first, never for itself."""
    from dialogs.engine.replies import queue_replies
    from dialogs.engine.types import Attachment, Inbound, Option, Reply

    add_messages(app.db, 1, now=clock.now(), prefix="digest", address="elder-5", kind="digest")
    later = clock.now() + timedelta(hours=1)  # a greeting due later is not ahead of anything yet
    add_messages(app.db, 1, now=clock.now(), prefix="greeting", address="elder-6", kind="greeting",
                 not_before=later)
    written = {}
    for address in ("elder-5", "elder-6"):
        async with app.db.async_session() as session:
            written[address] = await (await queue_replies(
                session, Inbound("fake", address, text="1"),
                [Reply("已保存。"), Reply("血压图", attachment=Attachment("photo", "/nonexistent.png")),
                 Reply("还需要做什么？", (Option("走访", "v"),))],
                key_prefix=f"reply:{address}:1", person_id=None, tokens={}, now=clock.now()))()
    # three messages each (a picture travels alone), flagged as a whole by the first
    assert [o.first_in_line for o in written["elder-5"]] == [False] * 3
    assert [o.first_in_line for o in written["elder-6"]] == [True] * 3
    await deliver_now(app.db, sender, written["elder-5"], app.services.now)
    await deliver_now(app.db, sender, written["elder-6"], app.services.now)
    assert platform.texts_to("elder-5")[:2] == ["digest 第0条", "已保存。"]
    assert platform.texts_to("elder-6")[:1] == ["已保存。"]


async def test_a_reply_written_during_a_big_broadcast_looks_only_at_its_own_chat(
        app: App, clock: FixedClock) -> None:
    """The queue check in a reply's INSERT searches the recipient's rows by index: with two
    thousand broadcast rows queued to others, SQLite's virtual machine runs about as many steps
    for it as with none (it used to walk every pending row, on every reply)."""
    from dialogs.engine.replies import queue_replies
    from dialogs.engine.types import Inbound, Reply

    if app.db.async_engine.dialect.name != "sqlite":
        pytest.skip("counts SQLite's virtual-machine steps")

    async def vm_steps(address: str) -> int:
        async with app.db.async_session() as session:
            raw = (await (await session.connection()).get_raw_connection()).driver_connection
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            raw._conn.set_progress_handler(count, 1)
            try:
                await (await queue_replies(session, Inbound("fake", address, text="1"), [Reply("好的。")],
                                           key_prefix=f"reply:{address}:1", person_id=None, tokens={},
                                           now=clock.now()))()
            finally:
                raw._conn.set_progress_handler(None, 1)
            return steps[0]

    quiet = await vm_steps("elder-7")
    add_messages(app.db, 2000, now=clock.now(), prefix="broadcast", kind="broadcast")
    busy = await vm_steps("elder-8")
    assert busy < quiet * 2, (quiet, busy)


async def test_replies_to_many_chats_at_once_are_each_recorded_before_their_step_ends(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    """Thirty chats answered at once: every reply is sent once and recorded as sent by the time
    its own delivery returns (so the chat's next reply finds nothing pending ahead), and the
    records share transactions instead of one each."""
    from storage.prepared import statements_run

    replies = [await reply_row(app, "fake", f"elder-{n}", f"第{n}条", clock.now()) for n in range(30)]
    recorded_when_done: list[bool] = []

    async def deliver(reply: Outgoing) -> None:
        results = await deliver_now(app.db, sender, [reply], app.services.now)
        assert [r.ok for r in results] == [True]
        recorded_when_done.append(statuses(app.db, [reply.outbox_id]) == {OutboxStatus.SENT: 1})

    before = statements_run()
    await asyncio.gather(*(deliver(r) for r in replies))
    assert recorded_when_done == [True] * 30
    assert all(platform.texts_to(f"elder-{n}") == [f"第{n}条"] for n in range(30))
    assert statements_run() - before < 30, "each reply was recorded in its own statement"


async def test_the_fast_path_sends_what_was_queued_earlier_first(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    """A reminder queued a moment ago reaches the person before the answer to what they typed."""
    queued = add_messages(app.db, 2, now=clock.now(), prefix="digest", address="elder-3", kind="digest")
    reply = await reply_row(app, "fake", "elder-3", "menu", clock.now())
    results = await deliver_now(app.db, sender, [reply], app.services.now)
    assert [r.ok for r in results] == [True, True, True]
    assert platform.texts_to("elder-3") == ["digest 第0条", "digest 第1条", "menu"]
    assert statuses(app.db, [*queued, reply.outbox_id]) == {OutboxStatus.SENT: 3}


async def test_a_reply_is_claimed_ahead_of_queued_bulk_and_bulk_backs_off_after_a_429(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    bulk = add_messages(app.db, 100, now=clock.now(), prefix="bulk", kind="broadcast")
    reply = add_messages(app.db, 1, now=clock.now(), prefix="reply", kind="reply")  # written last
    worker = clocked_worker(app, clock, sender, batch_size=10, concurrency=1)
    await worker.run_once()
    assert platform.texts_to("reply-0") == ["reply 第0条"], "the reply did not wait for 100 broadcasts"
    assert statuses(app.db, reply) == {OutboxStatus.SENT: 1}
    assert statuses(app.db, bulk)[OutboxStatus.SENT] == 9

    platform.fail_next(1, status=429, retry_after=30)  # the platform pushes back on a broadcast
    await worker.run_once()
    more_replies = add_messages(app.db, 3, now=clock.now(), prefix="answer", kind="reply")
    sent_bulk = statuses(app.db, bulk)[OutboxStatus.SENT]
    await worker.run_once()
    assert statuses(app.db, more_replies) == {OutboxStatus.SENT: 3}, "replies go on"
    assert statuses(app.db, bulk)[OutboxStatus.SENT] == sent_bulk, "bulk holds off for retry_after"
    clock.advance(seconds=31)
    await worker.run_once()
    assert statuses(app.db, bulk)[OutboxStatus.SENT] > sent_bulk, "and resumes after it"


async def test_a_reply_held_by_a_one_second_429_arrives_a_second_later_beside_bulk(
        app: App, tmp_path: Path) -> None:
    """Real PTB against the fake Bot API, the real worker running both lanes, a broadcast to 60
    chats going on: a reply refused with retry_after=1 goes out after one second, not after a
    growing backoff, and the broadcast still completes."""
    api = FakeBotAPI().start()
    bot = Bot(api.token, base_url=f"{api.base_url}/bot", request=HTTPXRequest(connection_pool_size=16))
    await bot.initialize()
    sender = TelegramSender(bot)
    now = utcnow()
    bulk = add_messages(app.db, 60, now=now, prefix="bc", kind="broadcast", channel="telegram")
    async with app.db.async_session() as session:  # the broadcast's chats are numeric on Telegram
        for n, row_id in enumerate(bulk):
            row = await session.get(OutboxMessage, row_id)
            assert row is not None
            row.address = str(9000 + n)
    worker = DeliveryWorker(app.db, {"telegram": sender}, now=utcnow,
                            settings=WorkerSettings(reply_poll_interval=0.25, poll_interval=0.25))
    running = asyncio.ensure_future(worker.run())
    try:
        await asyncio.sleep(0.3)  # the broadcast is under way
        api.fail("sendMessage", 429, "Too Many Requests: retry after 1", chat_id=4242, retry_after=1)
        reply = await reply_row(app, "telegram", "4242", "您好，已记录", utcnow())
        refused_at = time.monotonic()
        results = await deliver_now(app.db, sender, [reply], utcnow)
        assert results[0].retry_after == 1
        while not api.delivered(4242):
            assert time.monotonic() - refused_at < 10, "the reply never arrived"
            await asyncio.sleep(0.02)
        delay = time.monotonic() - refused_at
        while statuses(app.db, bulk) != {OutboxStatus.SENT: 60}:
            assert time.monotonic() - refused_at < 20, statuses(app.db, bulk)
            await asyncio.sleep(0.05)
    finally:
        worker.stop.set()
        await running
        await bot.shutdown()
        api.stop()
    assert 1.0 <= delay <= 2.0, f"reply arrived {delay:.2f}s after a 1-second 429"
    assert statuses(app.db, [reply.outbox_id]) == {OutboxStatus.SENT: 1}


LEASE_CONFIG = """
[delivery]
poll_interval_seconds = 0.1
batch_size = 20
concurrency = 4
"""  # lease_seconds and heartbeat_seconds left at their defaults (8 s, 2 s)


def test_the_rows_of_a_killed_worker_come_back_within_ten_seconds(app: App, db_url: str,
                                                                  tmp_path: Path) -> None:
    """A worker process holding claimed rows is SIGKILLed; another worker, already running,
    sends them once the dead one's lease lapses — within 10 s, not after a 120 s stale time."""
    ids = add_messages(app.db, 40, now=app.services.now(), prefix="held")
    config = tmp_path / "worker.toml"
    config.write_text(LEASE_CONFIG)
    platform = FakePlatform(delay=0.5).start()  # slow: the first worker holds its claims a while
    env = {**os.environ, "WARMLINE_CONFIG": str(config), "WARMLINE_DATA_KEY": TEST_DATA_KEY}
    env.pop("WARMLINE_NOW", None)
    with (tmp_path / "worker.log").open("ab") as out:
        victim = subprocess.Popen([sys.executable, "-m", "tests.fakes.worker_main", db_url, platform.url],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while statuses(app.db, ids)[OutboxStatus.SENDING] == 0:
            assert time.monotonic() < deadline, "the first worker never claimed"
            time.sleep(0.02)
        time.sleep(0.3)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        held = [r.id for r in rows(app.db, ids) if r.status == OutboxStatus.SENDING]
        assert held
        returned_after = asyncio.run(_survivor(app, platform, held, killed_at))
    finally:
        if victim.poll() is None:
            victim.kill()
        platform.close()
    assert returned_after <= 10.0, f"held rows came back {returned_after:.1f}s after the kill"
    assert set(platform.chats()) == {f"held-{i}" for i in range(40)}  # none lost
    assert platform.count() - 40 <= 4  # duplicates: at most what was in flight (concurrency)


async def _survivor(app: App, platform: FakePlatform, held: list[int], killed_at: float) -> float:
    """Run a second worker until every row is sent; return when the held rows were released."""
    sender = FakePlatformSender(platform.url, limits=RateLimit(per_second=1000, per_recipient_interval=0))
    worker = DeliveryWorker(app.db, {sender.channel: sender}, now=utcnow,
                            settings=WorkerSettings(poll_interval=0.1, reply_poll_interval=0.1))
    running = asyncio.ensure_future(worker.run())
    returned_after: float | None = None
    try:
        while True:
            states = statuses(app.db, held)
            if returned_after is None and not states[OutboxStatus.SENDING] - _ours(app, worker, held):
                returned_after = time.monotonic() - killed_at
            if states == {OutboxStatus.SENT: len(held)} and len(platform.chats()) == 40:
                break
            assert time.monotonic() - killed_at < 30, states
            await asyncio.sleep(0.05)
    finally:
        worker.stop.set()
        await running
        await sender.aclose()
    assert returned_after is not None
    return returned_after


def _ours(app: App, worker: DeliveryWorker, ids: list[int]) -> int:
    return sum(1 for r in rows(app.db, ids)
               if r.status == OutboxStatus.SENDING and r.claimed_by == worker.worker_id)
