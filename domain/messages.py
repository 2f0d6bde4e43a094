"""Messages to people: what one says (text, choices, an attachment) and how it is queued.

Dialogs reply with these, and the rules shared with the scheduled jobs (an invitation, an
alert, a renewal reminder) queue them through the outbox with an idempotency key, so a job
that runs twice never sends twice. An option's value never leaves the server: the outbox
payload carries a short opaque token bound to the recipient's address.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox
from storage.models import ChannelAddress, OutboxMessage

if TYPE_CHECKING:
    from domain.services import Services

@dataclass(frozen=True, slots=True)
class Option:
    """A choice offered to the user. `value` stays on the server; channels only see a token."""

    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A picture or file sent beside a reply (charts, exported files)."""

    kind: str  # photo | document
    path: str
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    options: tuple[Option, ...] = ()
    attachment: Attachment | None = None


def action_value(dialog: str, **args: Any) -> str:
    """An option value that starts a dialog, pre-filled; used by menus, reminders and buttons."""
    return json.dumps({"start": dialog, **args}, ensure_ascii=False, sort_keys=True)


def parse_action(value: str) -> dict[str, Any] | None:
    if not value.startswith("{"):
        return None
    try:
        action = json.loads(value)
    except ValueError:
        return None
    return action if isinstance(action, dict) else None


UNROUTED = outbox.UNROUTED  # the channel of a message whose person has no address yet


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
    return new_tokens(1)[0]


def new_tokens(count: int) -> list[str]:
    """`count` opaque tokens (9 random bytes each, URL-safe), from one read of the system's
    random source (a question's options get one each, on every step)."""
    # 9 random bytes are 12 base64 characters with no padding: slicing the encoding of the
    # whole draw gives each token exactly the encoding of its own 9 bytes
    encoded = base64.urlsafe_b64encode(secrets.token_bytes(9 * count)).decode()
    return [encoded[i:i + 12] for i in range(0, 12 * count, 12)]


async def preferred_address(session: AsyncSession, person_id: int,
                            channel: str | None = None) -> ChannelAddress | None:
    """Where to reach a person (the rule lives in storage.outbox)."""
    return await outbox.preferred_address(session, person_id, channel)


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
    """Queue a message to a person through the outbox's one writer, once per idempotency key.

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
    """Each person's preferred (channel, address), for many people in bulk queries."""
    return await outbox.preferred_addresses(session, person_ids)


async def enqueue_many(session: AsyncSession, messages: Sequence[ToQueue], now: datetime) -> dict[str, str]:
    """`queue_message` for many messages (a broadcast, a province's morning digests) in bulk
    statements through the outbox's one writer; returns {key: channel} of those written."""
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
        from domain.invitations import SendWindow  # the quiet-hours rule; it imports this module

        resume = SendWindow.of(services).family_time(services.now())
    return await outbox.route_waiting(session, person_id, channel, address, quiet_until=resume)


