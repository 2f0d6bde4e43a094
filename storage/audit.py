"""The audit trail: one function writes every entry, so no caller can forget a field."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import AuditEntry


def _entry(*, actor_id: int | None, action: str, entity: str, entity_id: int | None,
           household_id: int | None, detail: str | None, at: datetime) -> AuditEntry:
    return AuditEntry(actor_id=actor_id, action=action, entity=entity, entity_id=entity_id,
                      household_id=household_id, detail=detail, at=at)


async def record_audit(session: AsyncSession, **fields: object) -> None:
    session.add(_entry(**fields))  # type: ignore[arg-type]


def record_audit_sync(session: Session, **fields: object) -> None:
    session.add(_entry(**fields))  # type: ignore[arg-type]
