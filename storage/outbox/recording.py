"""Recording what happened to a row: sent, retried, failed, a receipt, an erasure; an operator's
retry or cancel; and blanking the bodies of finished messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Update, func, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import (
    OutboxMessage,
    OutboxStatus,
)
from storage.outbox.common import (
    fast_path,
)

# ------------------------------------------------------------------------ recording


async def mark_sent(session: AsyncSession, sent: Sequence[tuple[int, str | None, datetime]]) -> None:
    """`record_sent` for rows delivered, by id, with no ORM objects (it runs after every step).
    A row already recorded as sent is left as it is."""
    await fast_path().mark_sent.run_many(session, [{"row_id": row_id, "platform_id": platform_id, "at": at}
                                                   for row_id, platform_id, at in sent])


def record_sent(row: OutboxMessage, now: datetime, platform_message_id: str | None = None) -> None:
    row.attempts += 1
    row.status = OutboxStatus.SENT
    row.sent_at = now
    row.platform_message_id = platform_message_id or row.platform_message_id
    row.last_error = None
    row.claimed_by = row.claimed_at = None


def record_retry(row: OutboxMessage, next_attempt_at: datetime, error: str, *, attempt: bool = True) -> None:
    """Queued again for `next_attempt_at`; `attempt=False` when nothing reached the platform."""
    row.attempts += 1 if attempt else 0
    row.status = OutboxStatus.QUEUED
    row.next_attempt_at = next_attempt_at
    row.last_error = error[:500]
    row.claimed_by = row.claimed_at = None


def record_final(row: OutboxMessage, status: OutboxStatus, error: str, *, attempt: bool = True) -> None:
    """Failed or expired for good, with the reason an operator sees in `warmline outbox`."""
    row.attempts += 1 if attempt else 0
    row.status = status
    row.last_error = error[:500]
    row.claimed_by = row.claimed_at = None


def record_receipt(row: OutboxMessage, *, delivered: bool, code: str) -> bool:
    """A platform's delivery receipt (SMS) for a row already handed over: delivered clears a
    stale error; a failure marks the row failed. True when it turned the row failed."""
    if delivered:
        if row.status == OutboxStatus.SENT:
            row.last_error = None
        return False
    if row.status == OutboxStatus.FAILED:
        return False  # a receipt pushed again
    record_final(row, OutboxStatus.FAILED, f"receipt: {code}", attempt=False)
    return True


def record_erased(row: OutboxMessage, text: str) -> None:
    """A message naming an erased family: its body replaced by `text`, and never sent."""
    row.payload = {"text": text, "options": []}
    if row.status in (OutboxStatus.QUEUED, OutboxStatus.FAILED):
        row.status = OutboxStatus.EXPIRED


# ------------------------------------------------------------------ an operator's actions
# Only a `failed` row can be retried or cancelled: a queued or sending row belongs to the
# delivery worker, a sent one is done. Retrying puts it back in the queue as if new (attempts
# from zero, due now), so the worker's usual limits and backoff apply; cancelling marks it
# `expired` and says who gave it up. Both are conditional updates, so two clicks (or two
# operators) change a row once.


async def retry_failed(session: AsyncSession, message_id: int, now: datetime) -> bool:
    result = await session.execute(update(OutboxMessage).where(
        OutboxMessage.id == message_id, OutboxMessage.status == OutboxStatus.FAILED).values(
        status=OutboxStatus.QUEUED, attempts=0, next_attempt_at=now, claimed_by=None, claimed_at=None))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def cancel_failed(session: AsyncSession, message_id: int, now: datetime, by: str) -> bool:
    result = await session.execute(update(OutboxMessage).where(
        OutboxMessage.id == message_id, OutboxMessage.status == OutboxStatus.FAILED).values(
        status=OutboxStatus.EXPIRED, last_error=f"cancelled by {by}"[:500], claimed_by=None, claimed_at=None))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ bodies
# A row records who was sent what kind of message, when, and how it went; its body (`payload`:
# a visit note, a family's words, an intake summary) is sensitive and serves no one once the
# message is delivered or given up. After `[delivery] keep_bodies_days` the body is set to NULL;
# the row stays, so counts, the idempotency key (no message planned twice) and `warmline
# outbox` keep working.

FINISHED = (OutboxStatus.SENT, OutboxStatus.EXPIRED, OutboxStatus.FAILED)  # rows whose story is over


def purge_statement(now: datetime, keep: timedelta) -> Update:
    finished_at = func.coalesce(OutboxMessage.sent_at, OutboxMessage.created_at)
    return (update(OutboxMessage)
            .where(OutboxMessage.status.in_(FINISHED), OutboxMessage.payload.is_not(None),
                   finished_at < now - keep)
            .values(payload=None)
            .execution_options(synchronize_session=False))


def purge_delivered_bodies(session: Session, now: datetime, keep: timedelta) -> int:
    """Blank the bodies of messages finished more than `keep` ago; how many were blanked."""
    return int(session.execute(purge_statement(now, keep)).rowcount or 0)  # type: ignore[attr-defined]


async def apurge_delivered_bodies(session: AsyncSession, now: datetime, keep: timedelta) -> int:
    result = await session.execute(purge_statement(now, keep))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
