"""The delivery worker sends what the outbox holds — due rows only, in order, within limits — and
records every outcome where an operator can see it."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.app import App
from bot.cli import main as cli_main
from bot.delivery.base import RateLimit
from bot.delivery.worker import EXPIRED_NOTE, DeliveryWorker, WorkerSettings
from dialogs.services import FixedClock
from storage import outbox
from storage.base import utcnow
from storage.models import ChannelAddress, OutboxMessage, OutboxStatus, Person, Role
from tests.fakes.outbox import add_messages, rows, statuses
from tests.fakes.platform import FakePlatform
from tests.fakes.sender import FakePlatformSender


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    server = FakePlatform().start()
    yield server
    server.close()


@pytest.fixture
async def sender(platform: FakePlatform) -> AsyncIterator[FakePlatformSender]:
    client = FakePlatformSender(platform.url)
    yield client
    await client.aclose()


def make_worker(app: App, sender: FakePlatformSender, **settings: object) -> DeliveryWorker:
    return DeliveryWorker(app.db, {sender.channel: sender}, now=app.services.now,
                          settings=WorkerSettings(**settings))  # type: ignore[arg-type]


async def test_due_rows_are_sent_once_and_recorded(app: App, clock: FixedClock,
                                                   platform: FakePlatform, sender: FakePlatformSender) -> None:
    due = add_messages(app.db, 5, now=clock.now(), prefix="due")
    later = add_messages(app.db, 2, now=clock.now(), prefix="later",
                         not_before=clock.now() + timedelta(hours=1))
    other = add_messages(app.db, 2, now=clock.now(), prefix="wechat", channel="wechat")
    worker = make_worker(app, sender)

    stats = await worker.run_once()
    await worker.run_once()  # nothing more is due: nothing is sent twice

    assert stats.sent == 5
    assert platform.count() == 5
    assert set(platform.chats()) == {f"due-{i}" for i in range(5)}
    sent = rows(app.db, due)
    assert {r.status for r in sent} == {OutboxStatus.SENT}
    assert all(r.sent_at == clock.now() and r.platform_message_id and r.attempts == 1 for r in sent)
    assert all(r.claimed_by is None for r in sent)
    assert statuses(app.db, later) == {OutboxStatus.QUEUED: 2}  # not yet due
    assert statuses(app.db, other) == {OutboxStatus.QUEUED: 2}  # no sender here: left for another

    clock.advance(hours=1)
    await worker.run_once()
    assert statuses(app.db, later) == {OutboxStatus.SENT: 2}
    assert platform.count() == 7


async def test_one_persons_messages_arrive_in_order_and_spaced(app: App, clock: FixedClock,
                                                               platform: FakePlatform) -> None:
    sender = FakePlatformSender(platform.url, limits=RateLimit(per_second=100, per_recipient_interval=0.3))
    add_messages(app.db, 3, now=clock.now(), prefix="seq", address="elder-1")
    add_messages(app.db, 3, now=clock.now(), prefix="other")
    worker = make_worker(app, sender)
    for _ in range(100):  # rounds, as the worker's loop makes them: elder-1's next waits its turn
        await worker.run_once()
        if platform.count() == 6:
            break
        await asyncio.sleep(0.05)
    await sender.aclose()

    assert platform.texts_to("elder-1") == [f"seq 第{i}条" for i in range(3)]
    times = [r.at for r in platform.received if r.chat == "elder-1"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.25  # the per-recipient interval held (0.3 s, less network jitter)
    # the other people were not made to wait behind elder-1's spacing
    assert max(r.at for r in platform.received if r.chat.startswith("other")) < times[1]


async def test_channel_rate_limit_spreads_a_burst(app: App, clock: FixedClock,
                                                  platform: FakePlatform) -> None:
    sender = FakePlatformSender(platform.url, limits=RateLimit(per_second=20, per_recipient_interval=0))
    add_messages(app.db, 30, now=clock.now(), prefix="burst")
    started = time.monotonic()
    await make_worker(app, sender, concurrency=30).run_once()
    elapsed = time.monotonic() - started
    await sender.aclose()
    assert platform.count() == 30
    assert elapsed >= 0.45  # 20 at once, then 10 more at 20/s


async def test_stale_messages_expire_instead_of_going_out_late(app: App, clock: FixedClock,
                                                              platform: FakePlatform,
                                                              sender: FakePlatformSender) -> None:
    window_end = clock.now() + timedelta(hours=2)
    greetings = add_messages(app.db, 3, now=clock.now(), prefix="greet", kind="greeting",
                             not_before=clock.now() + timedelta(hours=1), expires_at=window_end)
    clock.advance(hours=3)  # the worker was down through the whole window
    await make_worker(app, sender).run_once()
    assert platform.count() == 0
    expired = rows(app.db, greetings)
    assert {r.status for r in expired} == {OutboxStatus.EXPIRED}
    assert {r.last_error for r in expired} == {EXPIRED_NOTE}


async def test_rows_of_a_sender_without_a_live_lease_are_requeued_others_left_alone(
        app: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    """A fast-path reply or a worker batch whose process died (no heartbeat within the lease) is
    sent again; the claims of a process that still beats, and claims younger than the lease
    (their process may not have beaten yet), are not touched."""
    wall = utcnow()  # claims and heartbeats are stamped with the wall clock, not the program's
    old, now = wall - timedelta(seconds=30), clock.now()
    dead = add_messages(app.db, 2, now=now, prefix="dead", status=OutboxStatus.SENDING,
                        claimed_by="host:1:dead", claimed_at=old)
    legacy = add_messages(app.db, 1, now=now, prefix="legacy", status=OutboxStatus.SENDING,
                          claimed_by="fastpath", claimed_at=old)
    alive = add_messages(app.db, 1, now=now, prefix="alive", status=OutboxStatus.SENDING,
                         claimed_by="host:2:alive", claimed_at=old)
    young = add_messages(app.db, 1, now=now, prefix="young", status=OutboxStatus.SENDING,
                         claimed_by="host:3:young", claimed_at=wall - timedelta(seconds=5))
    async with app.db.async_session() as session:
        await outbox.heartbeat(session, "host:1:dead", wall - timedelta(seconds=11))
        await outbox.heartbeat(session, "host:2:alive", wall - timedelta(seconds=2))
    stats = await make_worker(app, sender, lease=10).run_once()
    assert stats.requeued == 3
    assert statuses(app.db, dead + legacy) == {OutboxStatus.SENT: 3}
    assert statuses(app.db, alive + young) == {OutboxStatus.SENDING: 2}
    assert sorted(platform.chats()) == ["dead-0", "dead-1", "legacy-0"]


async def test_graceful_shutdown_finishes_in_flight_and_releases_the_rest(
        app: App, clock: FixedClock) -> None:
    platform = FakePlatform(delay=0.1).start()
    sender = FakePlatformSender(platform.url)
    ids = add_messages(app.db, 10, now=clock.now(), prefix="stop", address="one-person")
    stop = asyncio.Event()
    worker = DeliveryWorker(app.db, {"fake": sender}, now=app.services.now, stop=stop,
                            settings=WorkerSettings(shutdown_grace=5))
    task = asyncio.create_task(worker.run())
    await asyncio.to_thread(platform.wait_for, 2)
    stop.set()
    await asyncio.wait_for(task, 5)
    await sender.aclose()
    platform.close()

    delivered = platform.count()
    assert 2 <= delivered < 10
    final = statuses(app.db, ids)
    assert final == {OutboxStatus.SENT: delivered, OutboxStatus.QUEUED: 10 - delivered}
    assert all(r.claimed_by is None for r in rows(app.db, ids))  # nothing left claimed


async def test_unreachable_family_member_is_marked_and_volunteer_told(
        county: App, clock: FixedClock, platform: FakePlatform, sender: FakePlatformSender) -> None:
    with county.db.session() as session:
        member = session.scalar(select(Person).where(Person.role == Role.FAMILY).order_by(Person.id))
        assert member is not None
        session.add(ChannelAddress(person_id=member.id, channel="fake", address="openid-blocked",
                                   created_at=clock.now()))
        member_id = member.id
    platform.blocked.add("openid-blocked")
    ids = add_messages(county.db, 2, now=clock.now(), prefix="hello", address="openid-blocked",
                       person_id=member_id, kind="greeting")

    await make_worker(county, sender).run_once()

    assert platform.count() == 0
    failed = rows(county.db, ids)
    assert {r.status for r in failed} == {OutboxStatus.FAILED}
    assert platform.requests == 1  # the second message was not tried against a blocked chat
    with county.db.session() as session:
        person = session.get(Person, member_id)
        assert person is not None and person.unreachable_at is not None
        address = session.scalar(select(ChannelAddress).where(ChannelAddress.address == "openid-blocked"))
        assert address is not None and address.blocked_at is not None
        alerts = list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "alert")))
    assert len(alerts) == 1
    assert "联系不上" in alerts[0].payload["text"]
    assert alerts[0].person_id != member_id


def test_outbox_command_shows_counts_and_errors_without_text(app: App, clock: FixedClock,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    add_messages(app.db, 3, now=clock.now(), prefix="q")
    failed = add_messages(app.db, 1, now=clock.now(), prefix="f", kind="greeting")
    with app.db.session() as session:
        row = session.get(OutboxMessage, failed[0])
        assert row is not None
        row.status = OutboxStatus.FAILED
        row.last_error = "http 400"
        row.attempts = 1

    assert cli_main(["--db", app.db.url, "outbox"]) == 0
    table = capsys.readouterr().out
    assert "queued" in table and "failed" in table and "http 400" in table
    assert "第" not in table  # message text is not shown

    assert cli_main(["--db", app.db.url, "outbox", "--status", "failed", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == [{"status": "failed", "channel": "fake", "kind": "greeting", "count": 1}]
    assert [r["id"] for r in data["rows"]] == failed
    assert data["rows"][0]["last_error"] == "http 400"
    assert "payload" not in data["rows"][0]
