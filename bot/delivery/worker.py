"""The delivery worker: takes due outbox rows, sends them within platform limits, records the outcome.

Two lanes run side by side in one process, each a loop of rounds:
- the reply lane (replies and alerts) polls often and is never behind a broadcast;
- the bulk lane (broadcasts, digests, reminders, greetings) leaves a few of the channel's tokens
  to replies and stops for exactly `retry_after` whenever the platform pushes back.
Each round: give back the rows of senders whose lease has lapsed (a process that died) and
expire queued rows past their window (never sent late); claim a batch of due rows — the first
pending row of each address, so one person's messages go first in, first out (storage.outbox);
send different people's rows concurrently, working down each person's queue in order; record
each result in its own transaction right after the send (bot/delivery/outcome.py holds the
retry, backoff and unreachable rules).

Leases: the worker writes a heartbeat every `heartbeat_seconds` under this process's id, which
the fast path's claims carry too. A row claimed by a process whose heartbeat is older than
`lease_seconds` is queued again, so a killed process's rows come back within about ten seconds.

What that guarantees: a committed row is sent at least once; it is sent twice only if this
process dies (or its database stays unreachable past its lease) after the platform accepted a
message and before the result was committed — at most the rows it had in flight.
If the database is briefly unavailable, results are kept in memory and written when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.delivery.base import ChannelSender, SendResult, request_of
from bot.delivery.outcome import RetryPolicy, apply_result
from bot.delivery.ratelimit import SHORT_WAIT, RateLimiter
from storage import outbox
from storage.db import Database
from storage.models import OutboxLane, OutboxMessage, OutboxStatus
from storage.outbox import Claim

if TYPE_CHECKING:
    from bot.app import App
    from bot.config import Settings

log = logging.getLogger("warmline.delivery")

EXPIRED_NOTE = "expired before delivery"
STALE_NOTE = "re-queued: its sender stopped"
REPLY_LANES = (OutboxLane.INTERACTIVE, OutboxLane.ALERT)
BULK_LANES = (OutboxLane.BULK,)

__all__ = ["EXPIRED_NOTE", "Claim", "DeliveryWorker", "RoundStats", "WorkerSettings", "run_worker"]


@dataclass(frozen=True)
class WorkerSettings:
    batch_size: int = 50
    poll_interval: float = 1.0  # bulk lane, when nothing is due
    reply_poll_interval: float = 0.25  # reply lane: a retried reply leaves within this of its time
    concurrency: int = 8
    lease: float = 8.0
    heartbeat: float = 2.0
    shutdown_grace: float = 10.0
    max_hold: float = 5.0
    reply_reserve: float = 3.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerSettings:
        d = settings.section("delivery")
        base = cls()
        return cls(
            batch_size=int(d.get("batch_size", base.batch_size)),
            poll_interval=float(d.get("poll_interval_seconds", base.poll_interval)),
            reply_poll_interval=float(d.get("reply_poll_interval_seconds", base.reply_poll_interval)),
            concurrency=max(1, int(d.get("concurrency", base.concurrency))),
            lease=float(d.get("lease_seconds", base.lease)),
            heartbeat=float(d.get("heartbeat_seconds", base.heartbeat)),
            shutdown_grace=float(d.get("shutdown_grace_seconds", base.shutdown_grace)),
            max_hold=float(d.get("max_hold_seconds", base.max_hold)),
            reply_reserve=float(d.get("reply_reserve", base.reply_reserve)),
            policy=RetryPolicy.from_settings(settings),
        )


@dataclass
class RoundStats:
    requeued: int = 0
    expired: int = 0
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0


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
        # by default this process's id, so the heartbeat also keeps the fast path's claims alive
        self.worker_id = worker_id or outbox.this_process()
        self.limiter = limiter or RateLimiter(reply_reserve=self.settings.reply_reserve)
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
        """The heartbeat and both lanes until `stop` is set; then release what is held."""
        try:
            await self.beat()
        except Exception as exc:
            log.warning("first heartbeat failed error=%s", type(exc).__name__)
        tasks = [asyncio.ensure_future(self._heartbeats()),
                 asyncio.ensure_future(self._lane(REPLY_LANES, self.settings.reply_poll_interval)),
                 asyncio.ensure_future(self._lane(BULK_LANES, self.settings.poll_interval))]
        try:
            await self.stop.wait()
            lanes = tasks[1:]  # stopping: let in-flight sends finish, within grace
            _done, late = await asyncio.wait(lanes, timeout=self.settings.shutdown_grace)
            for task in (*late, tasks[0]):
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        finally:
            for task in tasks:
                task.cancel()
            await self.shutdown()

    async def _heartbeats(self) -> None:
        while not self.stop.is_set():
            await self._sleep(self.settings.heartbeat)
            try:
                await self.beat()
            except Exception as exc:  # the database away: the loop goes on, rows are released later
                log.warning("heartbeat failed error=%s", type(exc).__name__)

    async def beat(self) -> None:
        async with self.db.async_session() as session:
            await outbox.heartbeat(session, self.worker_id)

    async def _lane(self, lanes: Sequence[int], poll: float) -> None:
        """Rounds of one lane; database errors back off and retry, never end the loop."""
        failures = 0
        kept_at = 0.0
        while not self.stop.is_set():
            try:  # housekeeping writes: at most once a second, however often the lane polls
                due = time.monotonic() - kept_at >= 1.0
                stats = await self.run_once(lanes, housekeeping=due)
                kept_at = time.monotonic() if due else kept_at
            except Exception as exc:  # the database away, a driver error: back off, go on
                failures += 1
                delay = min(30.0, poll * 2 ** min(failures, 5))
                log.warning("delivery round failed error=%s retry_in=%.1fs", type(exc).__name__, delay)
                await self._sleep(delay)
                continue
            failures = 0
            if stats.claimed == 0:  # idle: until something may be due, at most `poll`
                spaced = min((self.limiter.channel(c, s.limits).next_free() for c, s in self.senders.items()),
                             default=float("inf"))
                await self._sleep(min(await self._until_due(lanes, poll), spaced + 0.01))

    async def _until_due(self, lanes: Sequence[int], poll: float) -> float:
        """Seconds to sleep: `poll`, or less if a row of these lanes falls due sooner (a reply
        waiting out a 1-second retry_after is taken the moment it may go)."""
        now = self.now()
        try:
            async with self.db.async_session() as session:
                due = await outbox.next_due(session, now=now, channels=list(self.senders), lanes=lanes)
        except Exception:
            return poll
        if due is None:
            return poll
        return max(0.0, min(poll, (due - now).total_seconds()))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    async def shutdown(self) -> None:
        """Write results still in memory; put every row still held back in the queue; end the lease."""
        try:
            await self._flush_unrecorded()
            if self._held:
                await self._release(list(self._held.values()))
            async with self.db.async_session() as session:
                await outbox.end_lease(session, self.worker_id)
        except Exception as exc:
            log.warning("shutdown could not release rows error=%s held=%d", type(exc).__name__,
                        len(self._held))

    async def run_once(self, lanes: Sequence[int] | None = None, *, housekeeping: bool = True) -> RoundStats:
        """One round: housekeeping, one claimed batch of `lanes` (all if None), sent."""
        stats = RoundStats()
        await self._flush_unrecorded()
        if housekeeping:
            stats.requeued, stats.expired = await self.maintain()
        claims = await self.claim(lanes)
        stats.claimed = len(claims)
        try:
            if claims:
                await self._deliver(claims, stats, lanes)
        finally:  # whatever this round could not finish goes back to the queue
            pending = {claim.id for claim, _ in self._unrecorded}
            leftovers = [c for c in self._held.values() if c.id not in pending
                         and (lanes is None or c.priority in lanes)]
            stats.released += await self._give_back(leftovers)
        if stats.requeued or stats.expired or stats.claimed:
            log.info("delivery round worker=%s claimed=%d sent=%d retried=%d failed=%d "
                     "released=%d requeued=%d expired=%d", self.worker_id, stats.claimed,
                     stats.sent, stats.retried, stats.failed, stats.released, stats.requeued,
                     stats.expired)
        return stats

    # ------------------------------------------------------------ housekeeping

    async def maintain(self) -> tuple[int, int]:
        """Re-queue the rows of dead senders, then expire what is past its window.
        Returns (requeued, expired)."""
        async with self.db.async_session() as session:
            requeued = await outbox.release_dead(session, timedelta(seconds=self.settings.lease),
                                                 keep=list(self._held), note=STALE_NOTE)
            expired = await outbox.expire_due(session, self.now(), EXPIRED_NOTE)
        if requeued:
            log.warning("re-queued the rows of a stopped sender count=%d", requeued)
        return requeued, expired

    def _bulk_held(self, channel: str) -> bool:
        return self.limiter.channel(channel, self.senders[channel].limits).pause_left() > self.settings.max_hold

    async def claim(self, lanes: Sequence[int] | None = None) -> list[Claim]:
        """Take up to a batch of due rows for our channels, atomically, replies first. Bulk
        waits on a channel the platform asked to slow down (longer than `max_hold`)."""
        if self.stop.is_set():
            return []
        wanted = list(lanes) if lanes is not None else list(OutboxLane)
        claims: list[Claim] = []
        async with self.db.async_session() as session:
            for channel in self.senders:
                allowed = [lane for lane in wanted
                           if lane != OutboxLane.BULK or not self._bulk_held(channel)]
                if allowed:
                    spaced = self.limiter.channel(channel, self.senders[channel].limits).spacing()
                    claims += await outbox.claim_batch(
                        session, claimer=self.worker_id, now=self.now(), channels=[channel],
                        limit=self.settings.batch_size - len(claims), lanes=allowed,
                        skip_addresses=spaced)
        for claim in claims:
            self._held[claim.id] = claim
        return claims

    # ---------------------------------------------------------------- sending

    async def _deliver(self, claims: Sequence[Claim], stats: RoundStats,
                       lanes: Sequence[int] | None) -> None:
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one_recipient(first: Claim) -> None:
            async with gate:
                await self._send_in_order(first, stats, lanes)

        ordered = sorted(claims, key=lambda c: (c.priority, c.id))
        outcomes = await asyncio.gather(*(one_recipient(c) for c in ordered), return_exceptions=True)
        for outcome in outcomes:  # every recipient finished first, then the first error counts
            if isinstance(outcome, BaseException):
                raise outcome

    async def _send_in_order(self, claim: Claim | None, stats: RoundStats,
                             lanes: Sequence[int] | None) -> None:
        """One person's rows, in order, while they are due; a failure holds back the rest."""
        while claim is not None:
            if self.stop.is_set():
                stats.released += await self._give_back([claim])
                return
            if claim.expires_at is not None and claim.expires_at <= self.now():
                await self._expire(claim)
                stats.expired += 1
            elif not await self._send_one(claim, stats):
                return
            claim = await self._next_of(claim, lanes)

    async def _send_one(self, claim: Claim, stats: RoundStats) -> bool:
        """Send and record one row; False if the person's queue must stop here."""
        sender = self.senders[claim.channel]
        limiter = self.limiter.channel(claim.channel, sender.limits)
        bulk = claim.priority >= OutboxLane.BULK
        if bulk and limiter.pause_left() > self.settings.max_hold:
            not_before = self.now() + timedelta(seconds=limiter.pause_left())
            stats.released += await self._give_back([claim], not_before=not_before)
            return False
        await limiter.acquire(claim.address, bulk=bulk)
        result = await self._send(sender, claim)
        limiter.sent(claim.address)
        if result.retry_after:
            limiter.pause(result.retry_after)  # bulk backs off; this chat waits in the outbox
        status = await self._record(claim, result)
        if result.ok:
            stats.sent += 1
            return True
        if status in (OutboxStatus.QUEUED, None):  # None: retry not recorded yet (DB away)
            stats.retried += 1
            return False
        stats.failed += 1
        if result.unreachable:  # the person blocked us: their other rows there fail too, unsent
            async with self.db.async_session() as session:
                stats.failed += await outbox.fail_queued_to(session, claim.channel, claim.address,
                                                            result.error or "unreachable")
            return False
        return True

    async def _next_of(self, claim: Claim, lanes: Sequence[int] | None) -> Claim | None:
        """The person's next row, once this one is done, if it is due, in our lanes and may go
        now (a platform spacing one person's messages leaves it to a later round instead of
        holding a send slot to wait)."""
        limiter = self.limiter.channel(claim.channel, self.senders[claim.channel].limits)
        if self.stop.is_set() or claim.id in self._held or limiter.recipient_wait(claim.address) > SHORT_WAIT:
            return None
        try:
            async with self.db.async_session() as session:
                nxt = await outbox.claim_next(session, claimer=self.worker_id, now=self.now(),
                                              channel=claim.channel, address=claim.address, lanes=lanes)
        except Exception as exc:
            log.warning("could not take the next row error=%s", type(exc).__name__)
            return None
        if nxt is not None:
            self._held[nxt.id] = nxt
        return nxt

    async def _send(self, sender: ChannelSender, claim: Claim) -> SendResult:
        try:
            return await sender.send(request_of(claim))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a sender bug or a network error it did not classify
            return SendResult.retry(f"sender raised {type(exc).__name__}")

    # -------------------------------------------------------------- recording

    async def _record(self, claim: Claim, result: SendResult) -> str | None:
        """Commit one send's outcome; if the database is away, keep it for the next round."""
        try:
            status = await self._apply(claim, result)
        except Exception as exc:
            log.warning("could not record a send outcome yet error=%s", type(exc).__name__)
            self._unrecorded.append((claim, result))
            return OutboxStatus.SENT if result.ok else None
        self._held.pop(claim.id, None)
        return status

    async def _apply(self, claim: Claim, result: SendResult) -> str | None:
        async with self.db.async_session() as session:
            query = select(OutboxMessage).where(OutboxMessage.id == claim.id)
            if self._pg:
                query = query.with_for_update()
            row = await session.scalar(query)
            if row is None or row.status == OutboxStatus.SENT:
                return row.status if row else None
            ours = row.status == OutboxStatus.SENDING and row.claimed_by == self.worker_id
            if not ours and not result.ok:  # re-queued and taken by someone else meanwhile
                return row.status
            await apply_result(session, row, result, self.now(), self.settings.policy)
            return row.status

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
        async with self.db.async_session() as session:
            await outbox.release(session, [c.id for c in claims], self.worker_id, not_before=not_before)
        for claim in claims:
            self._held.pop(claim.id, None)
        return len(claims)

    async def _give_back(self, claims: Sequence[Claim], *, not_before: datetime | None = None) -> int:
        """Release unsent rows; if the database is away, forget them so the lease rule re-queues
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
            row = await session.get(OutboxMessage, claim.id)
            if row is not None and row.claimed_by == self.worker_id:
                outbox.record_final(row, OutboxStatus.EXPIRED, EXPIRED_NOTE, attempt=False)
        self._held.pop(claim.id, None)


async def run_worker(app: App, senders: dict[str, ChannelSender], stop: asyncio.Event) -> None:
    """`warmline run`'s delivery service: loops until `stop`, then releases what it holds."""
    worker = DeliveryWorker.from_app(app, senders, stop=stop)
    log.info("delivery worker started worker=%s channels=%s", worker.worker_id, sorted(senders))
    await worker.run()
