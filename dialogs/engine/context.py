"""What a dialog step can see and do: the open unit of work, the person, services and the outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine import catalog
from dialogs.engine.types import Reply
from domain.casebook import Casebook
from domain.messages import (
    UNROUTED,
    ToQueue,
    addresses_of,
    enqueue_many,
    new_token,
    new_tokens,
    payload_of,
    preferred_address,
    queue_message,
    route_waiting,
)
from domain.services import Services
from storage.models import OutboxMessage, Person

# the outbox writer's names, for the callers that import them from here
__all__ = ["UNROUTED", "StepContext", "ToQueue", "addresses_of", "enqueue_many", "new_token", "new_tokens",
           "payload_of", "preferred_address", "queue_message", "route_waiting"]

@dataclass
class StepContext:
    """One step's view of the world. Dialogs read and write case records through `book` (the
    domain API bound to this step's unit of work and sender); `session` is the runner's and
    no dialog touches it (tests/test_layers.py checks)."""

    session: AsyncSession
    services: Services
    channel: str
    address: str
    person: Person | None
    locale: str = catalog.DEFAULT_LOCALE
    notices: list[Reply] = field(default_factory=list)
    book: Casebook = field(init=False)

    def __post_init__(self) -> None:
        self.book = Casebook(self.session, self.services, self.person)

    def t(self, key: str, **values: Any) -> str:
        return catalog.t(key, self.locale, **values)

    def now(self) -> datetime:
        return self.services.now()

    async def notify(self, person_id: int, reply: Reply, *, kind: str, key: str,
                     expires_at: datetime | None = None) -> OutboxMessage | None:
        return await self.book.notify(person_id, reply, kind=kind, key=key, expires_at=expires_at)

    async def audit(self, action: str, entity: str, entity_id: int | None,
                    household_id: int | None, detail: str | None = None) -> None:
        await self.book.audit(action, entity, entity_id, household_id, detail)
