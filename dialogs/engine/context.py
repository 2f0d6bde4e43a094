"""What a dialog step can see and do: the open unit of work, the person, services and the outbox."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
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
from storage.outbox import UNROUTED, preferred_address

__all__ = ["UNROUTED", "StepContext", "ToQueue", "addresses_of", "enqueue_many", "new_token", "payload_of",
           "preferred_address", "queue_message", "route_waiting"]


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


@dataclass(frozen=True)
class ToQueue:
    """One message to queue: to whom, what, and its idempotency key."""

    person_id: int
    reply: Reply
    kind: str
    key: str
    not_before: datetime | None = None
    expires_at: datetime | None = None


async def addresses_of(session: AsyncSession, person_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """Each person's preferred (channel, address), for many people in one query."""
    return await outbox.preferred_addresses(session, person_ids)


async def enqueue_many(session: AsyncSession, messages: Sequence[ToQueue], now: datetime) -> dict[str, str]:
    """`queue_message` for many messages (a broadcast, a province's morning digests) in bulk
    statements; returns {key: channel} of the messages written."""
    return await outbox.enqueue_many(session, [
        outbox.Queued(person_id=m.person_id, kind=m.kind, key=m.key, payload=payload_of(m.reply),
                      actions=[{"value": o.value} for o in m.reply.options],
                      not_before=m.not_before, expires_at=m.expires_at)
        for m in messages], now)


async def route_waiting(session: AsyncSession, person_id: int, channel: str, address: str,
                        services: Services | None = None) -> int:
    """Give messages queued while a person had no address (channel "none") their new address;
    with `services`, a digest, reminder or greeting linked in quiet hours waits for their end."""
    resume = None
    if services is not None:
        from dialogs.invitations import SendWindow  # the quiet-hours rule; it imports this module

        resume = SendWindow.of(services).family_time(services.now())
    return await outbox.route_waiting(session, person_id, channel, address, quiet_until=resume)


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
