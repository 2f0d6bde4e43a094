"""Writing outbox rows the way a broadcast or the scheduler does, and reading them back, for tests."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import select

from storage.db import Database
from storage.models import OutboxMessage, OutboxStatus
from storage.outbox import lane_of


def add_messages(db: Database, count: int, *, now: datetime, channel: str = "fake",
                 kind: str = "broadcast", prefix: str = "msg", address: str | None = None,
                 person_id: int | None = None, not_before: datetime | None = None,
                 expires_at: datetime | None = None, status: str = OutboxStatus.QUEUED,
                 claimed_by: str | None = None, claimed_at: datetime | None = None) -> list[int]:
    """`count` queued rows, to `address` or to addresses f"{prefix}-{i}", one transaction."""
    with db.session() as session:
        rows = [OutboxMessage(
            idempotency_key=f"{prefix}:{i}", channel=channel, address=address or f"{prefix}-{i}",
            person_id=person_id, kind=kind, priority=lane_of(kind), payload={"text": f"{prefix} 第{i}条", "options": []},
            status=status, created_at=now, not_before=not_before or now, next_attempt_at=not_before or now,
            expires_at=expires_at, claimed_by=claimed_by, claimed_at=claimed_at,
        ) for i in range(count)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def rows(db: Database, ids: list[int] | None = None) -> list[OutboxMessage]:
    with db.session() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if ids is not None:
            query = query.where(OutboxMessage.id.in_(ids))
        return list(session.scalars(query))


def statuses(db: Database, ids: list[int] | None = None) -> Counter[str]:
    return Counter(row.status for row in rows(db, ids))
