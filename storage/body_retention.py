"""Delivered message bodies are kept only as long as someone may need to look at them.

An outbox row records who was sent what kind of message, when, and how it went; its body
(`payload`: a visit note, a family's words, an intake summary) is sensitive personal
information that serves no one once the message has been delivered or given up. After
`[delivery] keep_bodies_days` the body is set to NULL; the row itself stays, so counts, the
idempotency key (no message planned twice) and `warmline outbox` keep working.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Update, func, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import OutboxMessage, OutboxStatus

# Rows whose story is over: sent, expired (too late to be useful), failed (given up).
FINISHED = (OutboxStatus.SENT, OutboxStatus.EXPIRED, OutboxStatus.FAILED)


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
