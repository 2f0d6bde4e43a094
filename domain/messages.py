"""Messages to people: what one says (text, choices, an attachment) and how it is queued.

Dialogs reply with these, and the rules shared with the scheduled jobs (an invitation, an
alert, a renewal reminder) queue them through the outbox with an idempotency key, so a job
that runs twice never sends twice. An option's value never leaves the server: the outbox
payload carries a short opaque token bound to the recipient's address.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ActionToken, ChannelAddress, OutboxMessage, OutboxStatus

UNROUTED = "none"  # the channel of a message whose person has no address yet


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


async def preferred_address(session: AsyncSession, person_id: int) -> ChannelAddress | None:
    """Where to reach a person: the most recently used address they have not blocked."""
    rows = await session.scalars(
        select(ChannelAddress)
        .where(ChannelAddress.person_id == person_id, ChannelAddress.blocked_at.is_(None))
        .order_by(ChannelAddress.last_inbound_at.desc().nulls_last(), ChannelAddress.id.desc())
        .limit(1)
    )
    return rows.first()


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
    existing = await session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == key))
    if existing is not None:
        return None
    address = await preferred_address(session, person_id)
    channel, addr = (address.channel, address.address) if address else (UNROUTED, str(person_id))
    tokens: list[str] = []
    for option in reply.options:
        token = new_token()
        tokens.append(token)
        session.add(ActionToken(token=token, channel=channel, address=addr,
                                action={"value": option.value}, created_at=now,
                                expires_at=expires_at))
    row = OutboxMessage(
        idempotency_key=key, channel=channel, address=addr, person_id=person_id, kind=kind,
        payload=payload_of(reply, tokens), created_at=now, next_attempt_at=not_before or now,
        expires_at=expires_at, status=OutboxStatus.QUEUED,
        last_error=None if address else "no_address: waits until the person is reachable",
    )
    session.add(row)
    await session.flush()
    return row


async def route_waiting(session: AsyncSession, person_id: int, channel: str, address: str) -> int:
    """Give messages queued while a person had no address (channel "none") their new address.

    Called wherever an address is first linked to a person, so an alert written before a
    coordinator ever opened the bot still reaches them.
    """
    rows = list(await session.scalars(select(OutboxMessage).where(
        OutboxMessage.channel == UNROUTED, OutboxMessage.person_id == person_id,
        OutboxMessage.status == OutboxStatus.QUEUED)))
    for row in rows:
        row.channel, row.address, row.last_error = channel, address, None
    tokens = await session.scalars(select(ActionToken).where(
        ActionToken.channel == UNROUTED, ActionToken.address == str(person_id)))
    for token in tokens:
        token.channel, token.address = channel, address
    return len(rows)
