"""What an operator may do to a message that failed for good: send it again, or give it up.

Only a `failed` row can be retried or cancelled — a queued or sending row belongs to the
delivery worker, a sent one is done. Retrying puts it back in the queue as if new (attempts
from zero, due now), so the worker's usual limits and backoff apply; cancelling marks it
`expired` and says who gave it up in `last_error`. Both are conditional updates, so two clicks
(or two operators) change a row once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OutboxMessage, OutboxStatus


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
