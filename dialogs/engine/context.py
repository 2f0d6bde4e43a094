"""What a dialog step can see and do: the open unit of work, the person, services and the outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine import catalog
from dialogs.engine.types import Reply
from domain.messages import UNROUTED, new_token, payload_of, queue_message, route_waiting
from domain.services import Services
from storage.audit import record_audit
from storage.models import OutboxMessage, Person

__all__ = ["UNROUTED", "StepContext", "new_token", "payload_of", "queue_message", "route_waiting"]

@dataclass
class StepContext:
    session: AsyncSession
    services: Services
    channel: str
    address: str
    person: Person | None
    locale: str = catalog.DEFAULT_LOCALE
    notices: list[Reply] = field(default_factory=list)

    def t(self, key: str, **values: Any) -> str:
        return catalog.t(key, self.locale, **values)

    def now(self) -> datetime:
        return self.services.now()

    async def notify(self, person_id: int, reply: Reply, *, kind: str, key: str,
                     expires_at: datetime | None = None) -> OutboxMessage | None:
        return await queue_message(self.session, person_id=person_id, reply=reply, kind=kind,
                                   key=key, now=self.now(), expires_at=expires_at)

    async def audit(self, action: str, entity: str, entity_id: int | None,
                    household_id: int | None, detail: str | None = None) -> None:
        await record_audit(self.session, actor_id=self.person.id if self.person else None,
                           action=action, entity=entity, entity_id=entity_id,
                           household_id=household_id, detail=detail, at=self.now())
