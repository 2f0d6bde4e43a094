"""Messages to people: what one says (text, choices, an attachment) and how it is queued.

Dialogs reply with these, and the rules shared with the scheduled jobs (an invitation, an
alert, a renewal reminder) queue them through the outbox with an idempotency key, so a job
that runs twice never sends twice. An option's value never leaves the server: the outbox
payload carries a short opaque token bound to the recipient's address.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ActionToken, ChannelAddress, OutboxMessage, OutboxStatus

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


UNROUTED = "none"  # the channel of a message whose person has no address yet
NO_ADDRESS = "no_address: waits until the person is reachable"


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
        last_error=None if address else NO_ADDRESS,
    )
    session.add(row)
    await session.flush()
    return row


SLICE = 500  # messages per round of statements (bound parameters stay well under the limits)


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
    """Each person's preferred address (as `preferred_address`: the most recently used one
    they have not blocked), for many people in one query."""
    out: dict[int, tuple[str, str]] = {}
    wanted = list(person_ids)
    for i in range(0, len(wanted), 10_000):  # PostgreSQL takes at most 65,535 parameters a statement
        rows = await session.execute(
            select(ChannelAddress.person_id, ChannelAddress.channel, ChannelAddress.address)
            .where(ChannelAddress.person_id.in_(wanted[i:i + 10_000]), ChannelAddress.blocked_at.is_(None))
            .order_by(ChannelAddress.person_id, ChannelAddress.last_inbound_at.desc().nulls_last(),
                      ChannelAddress.id.desc()))
        for person_id, channel, address in rows:
            out.setdefault(person_id, (channel, address))
    return out


async def enqueue_many(session: AsyncSession, messages: Sequence[ToQueue], now: datetime) -> dict[str, str]:
    """`queue_message` for many messages: the same rows and tokens, with one query for the keys
    already there, one for the addresses and one bulk INSERT per table per `SLICE` messages.
    Returns {key: channel} of the messages written (a key already queued is left alone).

    Why: a broadcast to ten thousand families, or a province's morning digests, one
    `queue_message` at a time is a key lookup, an address lookup and a flush each."""
    written: dict[str, str] = {}
    for i in range(0, len(messages), SLICE):
        part = messages[i:i + SLICE]
        existing = set(await session.scalars(select(OutboxMessage.idempotency_key).where(
            OutboxMessage.idempotency_key.in_([m.key for m in part]))))
        fresh = [m for m in part if m.key not in existing and m.key not in written]
        if not fresh:
            continue
        addresses = await addresses_of(session, sorted({m.person_id for m in fresh}))
        tokens: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for m in fresh:
            address = addresses.get(m.person_id)
            channel, addr = address if address else (UNROUTED, str(m.person_id))
            mine = [new_token() for _ in m.reply.options]
            tokens.extend({"token": token, "channel": channel, "address": addr, "action": {"value": option.value},
                           "created_at": now, "expires_at": m.expires_at, "used_at": None}
                          for token, option in zip(mine, m.reply.options, strict=True))
            rows.append({"idempotency_key": m.key, "channel": channel, "address": addr, "person_id": m.person_id,
                         "kind": m.kind, "payload": payload_of(m.reply, mine), "status": OutboxStatus.QUEUED,
                         "attempts": 0, "next_attempt_at": m.not_before or now, "expires_at": m.expires_at,
                         "created_at": now, "last_error": None if address else NO_ADDRESS})
            written[m.key] = channel
        if tokens:  # table inserts (the columns' types still apply): no ORM bookkeeping per row
            await session.execute(insert(ActionToken.__table__), tokens)  # type: ignore[arg-type]
        await session.execute(insert(OutboxMessage.__table__), rows)  # type: ignore[arg-type]
    return written


# Messages that wait for the end of quiet hours when an address is linked in them (an alert does not).
QUIET_KINDS = frozenset({"reminder", "greeting", "digest"})


async def route_waiting(session: AsyncSession, person_id: int, channel: str, address: str,
                        services: Services | None = None) -> int:
    """Give messages queued while a person had no address (channel "none") their new address.

    Called wherever an address is first linked to a person, so an alert written before a
    coordinator ever opened the bot still reaches them. A digest, reminder or greeting that was
    due earlier is not sent at once when the link is made in quiet hours: it waits for their end
    (with `services`; it expires instead if it is stale by then).
    """
    rows = list(await session.scalars(select(OutboxMessage).where(
        OutboxMessage.channel == UNROUTED, OutboxMessage.person_id == person_id,
        OutboxMessage.status == OutboxStatus.QUEUED)))
    resume = None
    if services is not None:
        from domain.invitations import SendWindow  # the quiet-hours rule; it imports this module

        resume = SendWindow.of(services).family_time(services.now())
    for row in rows:
        row.channel, row.address, row.last_error = channel, address, None
        if resume is not None and row.kind in QUIET_KINDS and row.next_attempt_at < resume:
            row.next_attempt_at = resume
    tokens = await session.scalars(select(ActionToken).where(
        ActionToken.channel == UNROUTED, ActionToken.address == str(person_id)))
    for token in tokens:
        token.channel, token.address = channel, address
    return len(rows)


