"""What a dialog step can see and do: the open unit of work, the person, services and the outbox."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine import catalog
from dialogs.engine.types import Reply
from dialogs.services import Services
from storage import outbox
from storage.audit import record_audit
from storage.models import OutboxMessage, Person
from storage.outbox import UNROUTED, preferred_address, route_waiting

__all__ = ["UNROUTED", "StepContext", "new_token", "payload_of", "preferred_address", "queue_message",
           "route_waiting"]


def payload_of(reply: Reply, tokens: list[str] | None = None) -> dict[str, Any]:
    """The channel-neutral outbox payload of a reply: text, option labels with their tokens."""
    options = [
        {"label": opt.label, "token": tokens[i] if tokens else ""}
        for i, opt in enumerate(reply.options)
    ]
    payload: dict[str, Any] = {"text": reply.text, "options": options}
    if reply.attachment is not None:
        payload["attachment"] = {
            "kind": reply.attachment.kind,
            "path": reply.attachment.path,
            "filename": reply.attachment.filename,
        }
    return payload


def new_token() -> str:
    return secrets.token_urlsafe(9)


async def queue_message(
    session: AsyncSession,
    *,
    person_id: int,
    reply: Reply,
    kind: str,
    key: str,
    now: datetime,
    not_before: datetime | None = None,
    expires_at: datetime | None = None,
) -> OutboxMessage | None:
    """Queue a message to a person through the outbox, once per idempotency key.

    Option values become action tokens bound to the recipient's address, so a button in a
    reminder starts the same dialog it names and nothing else.
    """
    recipient = await outbox.person_recipient(session, person_id)
    assert recipient is not None  # held unrouted until they link an address
    return await outbox.enqueue(
        session, kind=kind, recipient=recipient, payload=payload_of(reply), key=key, now=now,
        not_before=not_before, expires_at=expires_at,
        actions=[{"value": option.value} for option in reply.options])


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
