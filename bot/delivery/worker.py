"""The delivery worker: takes due outbox rows, sends them within platform limits, records the outcome.

The loop, each round:
1. re-queue stale claims — rows left "sending" by a process that died, or by a fast-path send
   that never reported back — and expire queued rows past their window (never sent late);
2. claim a batch of due rows for the channels this process can send on, in one statement
   (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)` on PostgreSQL, so several workers
   never claim the same row; on SQLite the single writer makes the same statement atomic);
3. send them — different people concurrently, one person's messages in order — through the
   channel's rate limits, and record each result in its own transaction right after the send
   (bot/delivery/outcome.py holds the retry, backoff and unreachable rules).

What that guarantees: a committed row is sent at least once; it is sent twice only if this
process dies (or its database stays unreachable until shutdown) after the platform accepted a
message and before the result was committed — at most `concurrency` rows per crash.
If the database is briefly unavailable, results are kept in memory and written when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from bot.delivery.base import ChannelSender, SendRequest, SendResult
from bot.delivery.outcome import RetryPolicy, apply_result
from bot.delivery.ratelimit import RateLimiter
from storage.db import Database
from storage.models import OutboxMessage, OutboxStatus

if TYPE_CHECKING:
    from bot.app import App
    from bot.config import Settings

log = logging.getLogger("warmline.delivery")

FASTPATH = "fastpath"
EXPIRED_NOTE = "expired before delivery"
STALE_NOTE = "re-queued: claim went stale"


@dataclass(frozen=True)
class WorkerSettings:
    batch_size: int = 50
    poll_interval: float = 1.0
    concurrency: int = 8
    stale_claim: float = 120.0
    shutdown_grace: float = 10.0
    max_hold: float = 5.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerSettings:
        d = settings.section("delivery")
        base = cls()
        return cls(
            batch_size=int(d.get("batch_size", base.batch_size)),
            poll_interval=float(d.get("poll_interval_seconds", base.poll_interval)),
            concurrency=max(1, int(d.get("concurrency", base.concurrency))),
            stale_claim=float(d.get("stale_claim_seconds", base.stale_claim)),
            shutdown_grace=float(d.get("shutdown_grace_seconds", base.shutdown_grace)),
            max_hold=float(d.get("max_hold_seconds", base.max_hold)),
            policy=RetryPolicy.from_settings(settings),
        )


@dataclass(frozen=True)
class Claim:
    """A row this worker holds: what it needs to send it, detached from any session."""

    id: int
    channel: str
    address: str
    kind: str
    payload: dict[str, Any]
    person_id: int | None
    attempts: int
    expires_at: datetime | None

    def request(self) -> SendRequest:
        return SendRequest(self.id, self.channel, self.address, self.kind, self.payload,
                           person_id=self.person_id, attempts=self.attempts)


@dataclass
class RoundStats:
    requeued: int = 0
    expired: int = 0
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0


def new_worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class DeliveryWorker:
    """One process's sender of outbox rows. `run()` loops until stopped; `run_once()` is one round."""

    def __init__(self, db: Database, senders: dict[str, ChannelSender], *,
                 now: Callable[[], datetime], settings: WorkerSettings | None = None,
                 worker_id: str | None = None, limiter: RateLimiter | None = None,
                 stop: asyncio.Event | None = None) -> None:
        self.db = db
        self.senders = dict(senders)
        self.now = now
        self.settings = settings or WorkerSettings()
        self.worker_id = worker_id or new_worker_id()
        self.limiter = limiter or RateLimiter()
        self.stop = stop or asyncio.Event()
        self._held: dict[int, Claim] = {}  # claimed, outcome not yet committed
        self._unrecorded: list[tuple[Claim, SendResult]] = []  # sent, but the DB was away
        self._pg = db.url.startswith("postgresql")

    @classmethod
    def from_app(cls, app: App, senders: dict[str, ChannelSender],
                 stop: asyncio.Event | None = None) -> DeliveryWorker:
        return cls(app.db, senders, now=app.services.now,
                   settings=WorkerSettings.from_settings(app.settings), stop=stop)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Rounds until `stop` is set; database errors back off and retry, never end the loop."""
        failures = 0
        stop_wait = asyncio.ensure_future(self.stop.wait())
        try:
            while not self.stop.is_set():
                current = asyncio.ensure_future(self.run_once())
                await asyncio.wait({current, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not current.done():  # stopping: let in-flight sends finish, within grace
                    await asyncio.wait({current}, timeout=self.settings.shutdown_grace)
                if not current.done():
                    current.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await current
                    break
                try:
                    stats = current.result()
                except Exception as exc:  # the database away, a driver error: back off, go on
                    failures += 1
                    delay = min(30.0, self.settings.poll_interval * 2 ** min(failures, 5))
                    log.warning("delivery round failed error=%s retry_in=%.1fs",
                                type(exc).__name__, delay)
                    await self._sleep(delay)
                    continue
                failures = 0
                if stats.claimed < self.settings.batch_size:
                    await self._sleep(self.settings.poll_interval)
        finally:
            stop_wait.cancel()
            await self.shutdown()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    async def shutdown(self) -> None:
        """Write results still in memory; put every row still held back in the queue."""
        try:
            await self._flush_unrecorded()
            if self._held:
                await self._release(list(self._held.values()))
        except Exception as exc:
            log.warning("shutdown could not release rows error=%s held=%d", type(exc).__name__,
                        len(self._held))

    async def run_once(self) -> RoundStats:
        stats = RoundStats()
        await self._flush_unrecorded()
        stats.requeued, stats.expired = await self.maintain()
        claims = await self.claim()
        stats.claimed = len(claims)
        try:
            if claims:
                await self._deliver(claims, stats)
        finally:  # whatever this round could not finish goes back to the queue
            pending = {claim.id for claim, _ in self._unrecorded}
            leftovers = [c for c in claims if c.id in self._held and c.id not in pending]
            stats.released += await self._give_back(leftovers)
        if stats.requeued or stats.expired or stats.claimed:
            log.info("delivery round worker=%s claimed=%d sent=%d retried=%d failed=%d "
                     "released=%d requeued=%d expired=%d", self.worker_id, stats.claimed,
                     stats.sent, stats.retried, stats.failed, stats.released, stats.requeued,
                     stats.expired)
        return stats

    # ------------------------------------------------------------ housekeeping

    async def maintain(self) -> tuple[int, int]:
        """Re-queue stale claims, then expire what is past its window. Returns (requeued, expired)."""
        now = self.now()
        cutoff = now - timedelta(seconds=self.settings.stale_claim)
        held = list(self._held)
        async with self.db.async_session() as session:
            stale = (update(OutboxMessage)
                     .where(OutboxMessage.status == OutboxStatus.SENDING,
                            or_(OutboxMessage.claimed_at < cutoff, OutboxMessage.claimed_at.is_(None)))
                     .values(status=OutboxStatus.QUEUED, claimed_by=None, claimed_at=None,
                             last_error=STALE_NOTE)
                     .execution_options(synchronize_session=False))
            if held:  # never our own rows, however slow their send
                stale = stale.where(OutboxMessage.id.not_in(held))
            requeued = (await session.execute(stale)).rowcount or 0
            expired = (await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.QUEUED,
                       OutboxMessage.expires_at.is_not(None), OutboxMessage.expires_at <= now)
                .values(status=OutboxStatus.EXPIRED, last_error=EXPIRED_NOTE)
                .execution_options(synchronize_session=False))).rowcount or 0
        if requeued:
            log.warning("re-queued stale claims count=%d", requeued)
        return requeued, expired

    async def claim(self) -> list[Claim]:
        """Take up to a batch of due rows for our channels, atomically, oldest first."""
        now = self.now()
        channels = [name for name in self.senders
                    if self.limiter.channel(name, self.senders[name].limits).pause_left()
                    <= self.settings.max_hold]
        if not channels or self.stop.is_set():
            return []
        due = (select(OutboxMessage.id)
               .where(OutboxMessage.status == OutboxStatus.QUEUED,
                      OutboxMessage.next_attempt_at <= now,
                      OutboxMessage.channel.in_(channels))
               .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
               .limit(self.settings.batch_size))
        if self._pg:
            due = due.with_for_update(skip_locked=True)
        statement = (update(OutboxMessage)
                     .where(OutboxMessage.id.in_(due), OutboxMessage.status == OutboxStatus.QUEUED)
                     .values(status=OutboxStatus.SENDING, claimed_by=self.worker_id, claimed_at=now)
                     .returning(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.address,
                                OutboxMessage.kind, OutboxMessage.payload, OutboxMessage.person_id,
                                OutboxMessage.attempts, OutboxMessage.expires_at)
                     .execution_options(synchronize_session=False))
        async with self.db.async_session() as session:
            rows = (await session.execute(statement)).all()
        claims = sorted((Claim(*row) for row in rows), key=lambda c: c.id)
        for claim in claims:
            self._held[claim.id] = claim
        return claims

    # ---------------------------------------------------------------- sending

    async def _deliver(self, claims: Sequence[Claim], stats: RoundStats) -> None:
        by_recipient: dict[tuple[str, str], list[Claim]] = {}
        for claim in claims:
            by_recipient.setdefault((claim.channel, claim.address), []).append(claim)
        gate = asyncio.Semaphore(self.settings.concurrency)
        # a row must be sent well before other workers would call its claim stale
        deadline = time.monotonic() + self.settings.stale_claim / 2

        async def one_recipient(queue: list[Claim]) -> None:
            async with gate:
                await self._send_in_order(queue, stats, deadline)

        outcomes = await asyncio.gather(*(one_recipient(q) for q in by_recipient.values()),
                                        return_exceptions=True)
        for outcome in outcomes:  # every recipient finished first, then the first error counts
            if isinstance(outcome, BaseException):
                raise outcome

    async def _send_in_order(self, queue: list[Claim], stats: RoundStats, deadline: float) -> None:
        """One person's rows, in order; a failure holds back the ones after it."""
        for index, claim in enumerate(queue):
            rest = queue[index:]
            if self.stop.is_set() or time.monotonic() > deadline:
                stats.released += await self._give_back(rest)
                return
            if claim.expires_at is not None and claim.expires_at <= self.now():
                await self._expire(claim)
                stats.expired += 1
                continue
            sender = self.senders[claim.channel]
            limiter = self.limiter.channel(claim.channel, sender.limits)
            if limiter.pause_left() > self.settings.max_hold:
                not_before = self.now() + timedelta(seconds=limiter.pause_left())
                stats.released += await self._give_back(rest, not_before=not_before)
                return
            await limiter.acquire(claim.address)
            result = await self._send(sender, claim)
            if result.retry_after:
                limiter.pause(result.retry_after)
            status, next_at = await self._record(claim, result)
            if result.ok:
                stats.sent += 1
                continue
            if status in (OutboxStatus.QUEUED, None):  # None: retry not recorded yet (DB away)
                stats.retried += 1
                stats.released += await self._give_back(queue[index + 1:], not_before=next_at)
                return
            stats.failed += 1
            if result.unreachable:  # the person blocked us: do not try their other rows
                for later in queue[index + 1:]:
                    await self._record(later, SendResult.failed(result.error or "unreachable",
                                                                unreachable=True))
                    stats.failed += 1
                return

    async def _send(self, sender: ChannelSender, claim: Claim) -> SendResult:
        try:
            return await sender.send(claim.request())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a sender bug or a network error it did not classify
            return SendResult.retry(f"sender raised {type(exc).__name__}")

    # -------------------------------------------------------------- recording

    async def _record(self, claim: Claim, result: SendResult) -> tuple[str | None, datetime | None]:
        """Commit one send's outcome; if the database is away, keep it for the next round."""
        try:
            outcome = await self._apply(claim, result)
        except Exception as exc:
            log.warning("could not record a send outcome yet error=%s", type(exc).__name__)
            self._unrecorded.append((claim, result))
            return (OutboxStatus.SENT if result.ok else None), None
        self._held.pop(claim.id, None)
        return outcome

    async def _apply(self, claim: Claim, result: SendResult) -> tuple[str | None, datetime | None]:
        async with self.db.async_session() as session:
            query = select(OutboxMessage).where(OutboxMessage.id == claim.id)
            if self._pg:
                query = query.with_for_update()
            row = await session.scalar(query)
            if row is None or row.status == OutboxStatus.SENT:
                return (row.status if row else None), None
            ours = row.status == OutboxStatus.SENDING and row.claimed_by == self.worker_id
            if not ours and not result.ok:  # re-queued and taken by someone else meanwhile
                return row.status, None
            await apply_result(session, row, result, self.now(), self.settings.policy)
            return row.status, row.next_attempt_at

    async def _flush_unrecorded(self) -> None:
        pending, self._unrecorded = self._unrecorded, []
        for index, (claim, result) in enumerate(pending):
            try:
                await self._apply(claim, result)
            except Exception:
                self._unrecorded = pending[index:] + self._unrecorded
                raise
            self._held.pop(claim.id, None)

    async def _release(self, claims: Sequence[Claim], *, not_before: datetime | None = None) -> int:
        """Give rows back to the queue untouched (not an attempt), e.g. on shutdown."""
        if not claims:
            return 0
        values: dict[str, Any] = {"status": OutboxStatus.QUEUED, "claimed_by": None, "claimed_at": None}
        if not_before is not None:
            values["next_attempt_at"] = not_before
        async with self.db.async_session() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([c.id for c in claims]),
                       OutboxMessage.status == OutboxStatus.SENDING,
                       OutboxMessage.claimed_by == self.worker_id)
                .values(**values).execution_options(synchronize_session=False))
        for claim in claims:
            self._held.pop(claim.id, None)
        return len(claims)

    async def _give_back(self, claims: Sequence[Claim], *, not_before: datetime | None = None) -> int:
        """Release unsent rows; if the database is away, forget them so the stale rule re-queues
        them later (they were never sent, so that cannot duplicate)."""
        try:
            return await self._release(claims, not_before=not_before)
        except Exception as exc:
            log.warning("could not release rows error=%s count=%d", type(exc).__name__, len(claims))
            for claim in claims:
                self._held.pop(claim.id, None)
            return 0

    async def _expire(self, claim: Claim) -> None:
        async with self.db.async_session() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == claim.id, OutboxMessage.claimed_by == self.worker_id)
                .values(status=OutboxStatus.EXPIRED, last_error=EXPIRED_NOTE, claimed_by=None,
                        claimed_at=None)
                .execution_options(synchronize_session=False))
        self._held.pop(claim.id, None)


async def run_worker(app: App, senders: dict[str, ChannelSender], stop: asyncio.Event) -> None:
    """`warmline run`'s delivery service: loops until `stop`, then releases what it holds."""
    worker = DeliveryWorker.from_app(app, senders, stop=stop)
    log.info("delivery worker started worker=%s channels=%s", worker.worker_id, sorted(senders))
    await worker.run()
