"""The audit trail: one function writes every entry, so no caller can forget a field."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.base import table_of
from storage.models import AuditEntry
from storage.prepared import Prepared

_INSERT = Prepared(insert(table_of(AuditEntry)),
                   keys=("actor_id", "action", "entity", "entity_id", "household_id", "detail", "at"))


def _values(*, actor_id: int | None, action: str, entity: str, entity_id: int | None,
            household_id: int | None, detail: str | None, at: datetime) -> dict[str, object]:
    return {"actor_id": actor_id, "action": action, "entity": entity, "entity_id": entity_id,
            "household_id": household_id, "detail": detail, "at": at}


async def record_audit(session: AsyncSession, **fields: object) -> None:
    """Written at once as a plain INSERT (a dialog step audits what it saves or shows; through
    the ORM that was an object, its unit-of-work flush and a second statement path)."""
    await _INSERT.run(session, _values(**fields))  # type: ignore[arg-type]


def record_audit_sync(session: Session, **fields: object) -> None:
    session.add(AuditEntry(**_values(**fields)))  # type: ignore[arg-type]
