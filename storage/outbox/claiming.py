"""Claiming rows to send — first in, first out per address, lanes before bulk — releasing them,
and the worker leases that bring back what a dead process had claimed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.base import utcnow
from storage.models import (
    DeliveryWorkerLease,
    OutboxMessage,
    OutboxStatus,
)
from storage.outbox.common import (
    PENDING,
)

# ------------------------------------------------------------------------ claiming


def earlier_pending(row: type[OutboxMessage] | Any, now: datetime) -> Any:
    """SQL: some row to the same address, written before `row`, is still pending and due."""
    before = aliased(OutboxMessage)
    return exists().where(and_(
        before.channel == row.channel, before.address == row.address, before.id < row.id,
        before.status.in_(PENDING), before.not_before <= now))


@dataclass(frozen=True)
class Claim:
    """A row a sender holds: what it needs to send it, detached from any session."""

    id: int
    channel: str
    address: str
    kind: str
    payload: dict[str, Any]
    person_id: int | None
    attempts: int
    expires_at: datetime | None
    priority: int


_CLAIM_COLUMNS = (OutboxMessage.id, OutboxMessage.channel, OutboxMessage.address, OutboxMessage.kind,
                  OutboxMessage.payload, OutboxMessage.person_id, OutboxMessage.attempts,
                  OutboxMessage.expires_at, OutboxMessage.priority)


def _is_pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def _take(session: AsyncSession, ids: Sequence[int], claimer: str) -> list[Claim]:
    """Claim exactly the rows among `ids` still queued (another sender may have been quicker)."""
    if not ids:
        return []
    rows = (await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.status == OutboxStatus.QUEUED)
        .values(status=OutboxStatus.SENDING, claimed_by=claimer, claimed_at=utcnow())
        .returning(*_CLAIM_COLUMNS)
        .execution_options(synchronize_session=False))).all()
    return sorted((Claim(*row) for row in rows), key=lambda c: c.id)


async def claim_batch(session: AsyncSession, *, claimer: str, now: datetime, channels: Sequence[str],
                      limit: int, lanes: Sequence[int] | None = None,
                      skip_addresses: Sequence[str] = ()) -> list[Claim]:
    """Claim up to `limit` due rows for `channels`: the first pending row of each address only
    (first in, first out), the highest lane first, then the oldest due.

    The due rows are read first and claimed only if there are any, so an idle poll writes
    nothing; on PostgreSQL the read locks them (`FOR UPDATE SKIP LOCKED`), so concurrent
    workers take different rows; elsewhere the conditional update decides a race.
    """
    if not channels or limit <= 0:
        return []
    due = (select(OutboxMessage.id)
           .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.next_attempt_at <= now,
                  OutboxMessage.channel.in_(list(channels)), ~earlier_pending(OutboxMessage, now))
           .order_by(OutboxMessage.priority, OutboxMessage.next_attempt_at, OutboxMessage.id)
           .limit(limit))
    if lanes is not None:
        due = due.where(OutboxMessage.priority.in_([int(lane) for lane in lanes]))
    if skip_addresses:  # spaced by the sender's per-recipient interval: a later round takes them
        due = due.where(OutboxMessage.address.not_in(list(skip_addresses)))
    if _is_pg(session):
        due = due.with_for_update(skip_locked=True)
    ids = list(await session.scalars(due))
    return await _take(session, ids, claimer)


async def next_due(session: AsyncSession, *, now: datetime, channels: Sequence[str],
                   lanes: Sequence[int]) -> datetime | None:
    """When the next queued row of these lanes falls due after `now` (a sender's wake-up time;
    rows already due but held behind an earlier one are not counted, so it never spins)."""
    return await session.scalar(
        select(func.min(OutboxMessage.next_attempt_at))
        .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.next_attempt_at > now,
               OutboxMessage.channel.in_(list(channels)),
               OutboxMessage.priority.in_([int(lane) for lane in lanes])))


async def claim_next(session: AsyncSession, *, claimer: str, now: datetime, channel: str, address: str,
                     lanes: Sequence[int] | None = None) -> Claim | None:
    """Claim the next row to one address once the one before it is done (a sender working
    through one person's queue in order); None if it is not due, not in `lanes`, or held."""
    head = (select(OutboxMessage.id)
            .where(OutboxMessage.channel == channel, OutboxMessage.address == address,
                   OutboxMessage.status.in_(PENDING), OutboxMessage.not_before <= now)
            .order_by(OutboxMessage.id).limit(1))
    if _is_pg(session):
        head = head.with_for_update(skip_locked=True)
    first = await session.scalar(head)
    if first is None:
        return None
    row = await session.get(OutboxMessage, first)
    if (row is None or row.status != OutboxStatus.QUEUED or row.next_attempt_at > now
            or (lanes is not None and row.priority not in lanes)):
        return None
    claims = await _take(session, [first], claimer)
    return claims[0] if claims else None


async def claim_ahead(session: AsyncSession, *, claimer: str, now: datetime, channel: str,
                      address: str, before_id: int) -> list[Claim] | None:
    """For a sender about to deliver row `before_id` (the fast path): claim the pending rows to
    the same address written before it, so they go first. [] if there are none (the usual
    case, answered by one read); None if one of them cannot go now (being sent elsewhere, or
    waiting out a retry) — then `before_id` must wait its turn in the queue.
    """
    ahead = list(await session.execute(
        select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.next_attempt_at)
        .where(OutboxMessage.channel == channel, OutboxMessage.address == address,
               OutboxMessage.id < before_id, OutboxMessage.status.in_(PENDING),
               OutboxMessage.not_before <= now)
        .order_by(OutboxMessage.id)))
    if not ahead:
        return []
    if any(status != OutboxStatus.QUEUED or at > now for _id, status, at in ahead):
        return None
    claims = await _take(session, [row_id for row_id, _s, _a in ahead], claimer)
    if len(claims) != len(ahead):  # another sender took one meanwhile: give ours back, wait
        await release(session, [c.id for c in claims], claimer)
        return None
    return claims


async def lift(session: AsyncSession, *, channel: str, address: str, before_id: int, priority: int) -> None:
    """Raise the pending rows ahead of `before_id` to its lane: a reply waiting behind a
    greeting must not also wait for the whole county's greetings."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.channel == channel, OutboxMessage.address == address,
               OutboxMessage.id < before_id, OutboxMessage.status.in_(PENDING),
               OutboxMessage.priority > priority)
        .values(priority=priority).execution_options(synchronize_session=False))


async def release(session: AsyncSession, ids: Sequence[int], claimer: str, *,
                  not_before: datetime | None = None, priority: int | None = None) -> int:
    """Give claimed rows back to the queue untouched (no attempt counted)."""
    if not ids:
        return 0
    values: dict[str, Any] = {"status": OutboxStatus.QUEUED, "claimed_by": None, "claimed_at": None}
    if not_before is not None:
        values["next_attempt_at"] = not_before
    if priority is not None:
        values["priority"] = priority
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.status == OutboxStatus.SENDING,
               OutboxMessage.claimed_by == claimer)
        .values(**values).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


# ------------------------------------------------------------------- worker leases


async def heartbeat(session: AsyncSession, worker_id: str, at: datetime | None = None) -> None:
    """Say this claimer is alive (its claimed rows stay its own)."""
    now = at or utcnow()
    lease = await session.get(DeliveryWorkerLease, worker_id)
    if lease is None:
        session.add(DeliveryWorkerLease(id=worker_id, started_at=now, heartbeat_at=now))
    else:
        lease.heartbeat_at = now


async def end_lease(session: AsyncSession, worker_id: str) -> None:
    await session.execute(delete(DeliveryWorkerLease).where(DeliveryWorkerLease.id == worker_id))


async def release_dead(session: AsyncSession, lease: timedelta, *, keep: Sequence[int] = (),
                       note: str = "re-queued: its sender stopped") -> int:
    """Queue again the rows claimed by senders whose heartbeat is older than `lease`.

    A dead process's rows come back `lease` after its last heartbeat. A claimer with no lease
    at all (it has not beaten yet, or an older version's "fastpath") keeps its rows until they
    are `lease` old.
    """
    now = utcnow()
    cutoff = now - lease
    alive = select(DeliveryWorkerLease.id).where(DeliveryWorkerLease.heartbeat_at >= cutoff)
    lapsed = select(DeliveryWorkerLease.id).where(DeliveryWorkerLease.heartbeat_at < cutoff)
    statement = (update(OutboxMessage)
                 .where(OutboxMessage.status == OutboxStatus.SENDING,
                        or_(OutboxMessage.claimed_by.is_(None), OutboxMessage.claimed_by.not_in(alive)),
                        or_(OutboxMessage.claimed_by.in_(lapsed), OutboxMessage.claimed_at < cutoff,
                            OutboxMessage.claimed_at.is_(None)))
                 .values(status=OutboxStatus.QUEUED, claimed_by=None, claimed_at=None, last_error=note)
                 .execution_options(synchronize_session=False))
    if keep:
        statement = statement.where(OutboxMessage.id.not_in(list(keep)))
    result = await session.execute(statement)
    await session.execute(delete(DeliveryWorkerLease).where(
        DeliveryWorkerLease.heartbeat_at < now - 10 * lease))  # long gone: forget them
    return int(getattr(result, "rowcount", 0) or 0)


async def expire_due(session: AsyncSession, now: datetime, note: str) -> int:
    """Mark queued rows past their window expired: never sent late."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.expires_at.is_not(None),
               OutboxMessage.expires_at <= now)
        .values(status=OutboxStatus.EXPIRED, last_error=note)
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
