"""Many outbox messages in a few statements: `queue_message` for thousands of recipients.

Why: the morning digests of a province (one per volunteer and coordinator) and a broadcast to
ten thousand families were written one `queue_message` at a time — a lookup of the key, a
lookup of the address, a flush — about a millisecond each. `enqueue_many` writes the same rows
(same idempotency keys, same action tokens bound to the same address, same "no address yet"
rows) with one query for the keys already there, one for the addresses and one bulk INSERT per
table, per slice of `SLICE` messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine.context import UNROUTED, new_token, payload_of
from dialogs.engine.types import Reply
from storage.models import ActionToken, ChannelAddress, OutboxMessage, OutboxStatus

SLICE = 500  # messages per round of statements (bound parameters stay well under the limits)
NO_ADDRESS = "no_address: waits until the person is reachable"


@dataclass(frozen=True)
class Outgoing:
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
    rows = await session.execute(
        select(ChannelAddress.person_id, ChannelAddress.channel, ChannelAddress.address)
        .where(ChannelAddress.person_id.in_(list(person_ids)), ChannelAddress.blocked_at.is_(None))
        .order_by(ChannelAddress.person_id, ChannelAddress.last_inbound_at.desc().nulls_last(),
                  ChannelAddress.id.desc()))
    for person_id, channel, address in rows:
        out.setdefault(person_id, (channel, address))
    return out


async def enqueue_many(session: AsyncSession, messages: Sequence[Outgoing], now: datetime) -> set[str]:
    """Queue every message whose key is new; returns the keys written (the others existed)."""
    written: set[str] = set()
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
            written.add(m.key)
        if tokens:
            await session.execute(insert(ActionToken), tokens)
        await session.execute(insert(OutboxMessage), rows)
    return written
