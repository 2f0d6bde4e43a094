"""Writing outbound messages: one, a step's replies (already claimed for the fast path), many at
once; cancelling what is queued."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.base import table_of
from storage.models import (
    ActionToken,
    OutboxMessage,
    OutboxStatus,
)
from storage.outbox.common import (
    NO_ADDRESS_NOTE,
    UNROUTED,
    Recipient,
    fast_path,
    lane_of,
    row_values,
    this_process,
)
from storage.outbox.routing import (
    preferred_addresses,
)

# ------------------------------------------------------------------------ writing


async def enqueue(session: AsyncSession, *, kind: str, recipient: Recipient, payload: dict[str, Any],
                  key: str, now: datetime, priority: int | None = None,
                  not_before: datetime | None = None, expires_at: datetime | None = None,
                  actions: Sequence[dict[str, Any]] | None = None, once: bool = True,
                  claimed_by: str | None = None, flush: bool = True) -> OutboxMessage | None:
    """Write one outbound message; None if a row with this idempotency key exists (`once`).

    `actions`, one per option in `payload["options"]`, become action tokens bound to the
    recipient's address (a button means that action for that person only). `claimed_by`
    writes the row already claimed, for a sender that delivers it right after commit (the
    fast path); it must hold a worker lease (`storage.outbox_claims`) for the row to be
    recovered if that process dies. `flush=False` leaves the id unassigned until the caller
    flushes (one round trip for a step's several replies).
    """
    if once and await session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)) is not None:
        return None
    payload = dict(payload)
    if actions:
        options = [dict(o) for o in payload.get("options") or []]
        for option, action in zip(options, actions, strict=False):
            token = secrets.token_urlsafe(9)
            session.add(ActionToken(token=token, channel=recipient.channel, address=recipient.address,
                                    action=dict(action), created_at=now, expires_at=expires_at))
            option["token"] = token
        payload["options"] = options
    row = OutboxMessage(**row_values(kind=kind, recipient=recipient, payload=payload, key=key, now=now,
                                     priority=priority, not_before=not_before, expires_at=expires_at,
                                     claimed_by=claimed_by))
    session.add(row)
    if flush:
        await session.flush()
    return row




async def enqueue_claimed(session: AsyncSession, *, kind: str, recipient: Recipient,
                          payloads: Sequence[tuple[str, dict[str, Any]]], now: datetime,
                          ) -> Callable[[], Awaitable[tuple[list[int], bool]]]:
    """A step's replies (key, payload), written already claimed by this process for its fast
    path, as plain INSERTs: this runs on every message, where the unit of work's bookkeeping
    for a new object costs more than the statement. Same columns as `enqueue`.

    Returns how to learn the rows' ids, and whether the first is first in line: no earlier row
    to the address pending (what `claim_ahead` would find), from the same statement, so the fast
    path can send without asking again. Awaited after the step's `pipelined(commit=True)` block,
    the rows travel with the step's COMMIT (storage.prepared)."""
    claimer, statement = this_process(), fast_path().insert_returning_id
    sent = []
    for key, payload in payloads:
        values = row_values(kind=kind, recipient=recipient, payload=payload, key=key, now=now,
                            claimed_by=claimer)
        values.update(ahead_channel=recipient.channel, ahead_address=recipient.address, ahead_at=now)
        sent.append(await statement.send(session, values))

    async def written() -> tuple[list[int], bool]:
        ids: list[int] = []
        clear = True
        for pending in sent:
            (row_id, ahead), = await pending.rows()
            clear = clear and (bool(ids) or not ahead)  # later rows have ours ahead of them
            ids.append(int(row_id))
        return ids, clear and bool(ids)

    return written


SLICE = 500  # messages per round of bulk statements (bound parameters stay well under the limits)


@dataclass(frozen=True)
class Queued:
    """One message of a bulk enqueue: to whom, what, its key, and when."""

    person_id: int
    kind: str
    key: str
    payload: dict[str, Any]
    actions: Sequence[dict[str, Any]] = ()
    not_before: datetime | None = None
    expires_at: datetime | None = None


async def enqueue_many(session: AsyncSession, messages: Sequence[Queued], now: datetime) -> dict[str, str]:
    """`enqueue` to people (held unrouted until linked) for many messages: the same rows and
    tokens, with one query for the keys already there, two for the addresses and one bulk
    INSERT per table per `SLICE` messages. Returns {key: channel} of the messages written.

    Why: a broadcast to ten thousand families, or a province's morning digests, one `enqueue`
    at a time is a key lookup, an address lookup and a flush each."""
    written: dict[str, str] = {}
    for i in range(0, len(messages), SLICE):
        part = messages[i:i + SLICE]
        existing = set(await session.scalars(select(OutboxMessage.idempotency_key).where(
            OutboxMessage.idempotency_key.in_([m.key for m in part]))))
        fresh = [m for m in part if m.key not in existing and m.key not in written]
        if not fresh:
            continue
        addresses = await preferred_addresses(session, [m.person_id for m in fresh])
        tokens: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for m in fresh:
            address = addresses.get(m.person_id)
            channel, addr = address if address else (UNROUTED, str(m.person_id))
            payload = dict(m.payload)
            options = [dict(o) for o in payload.get("options") or []]
            for option, action in zip(options, m.actions, strict=False):
                option["token"] = secrets.token_urlsafe(9)
                tokens.append({"token": option["token"], "channel": channel, "address": addr,
                               "action": dict(action), "created_at": now, "expires_at": m.expires_at,
                               "used_at": None})
            payload["options"] = options
            start = m.not_before or now
            rows.append({"idempotency_key": m.key, "channel": channel, "address": addr,
                         "person_id": m.person_id, "kind": m.kind, "payload": payload,
                         "priority": int(lane_of(m.kind)), "status": OutboxStatus.QUEUED, "attempts": 0,
                         "not_before": start, "next_attempt_at": start, "expires_at": m.expires_at,
                         "created_at": now, "last_error": None if address else NO_ADDRESS_NOTE})
            written[m.key] = channel
        if tokens:  # table inserts (the columns' types still apply): no ORM bookkeeping per row
            await session.execute(insert(table_of(ActionToken)), tokens)
        await session.execute(insert(table_of(OutboxMessage)), rows)
    return written


async def cancel_queued(session: AsyncSession, person_id: int, note: str, *,
                        keep_kinds: Sequence[str] = ("reply",)) -> int:
    """Fail every queued row to a person (they said stop), except the kinds kept."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.person_id == person_id, OutboxMessage.status == OutboxStatus.QUEUED,
               OutboxMessage.kind.not_in(list(keep_kinds)))
        .values(status=OutboxStatus.FAILED, last_error=note)
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def fail_queued_to(session: AsyncSession, channel: str, address: str, note: str) -> int:
    """Fail the queued rows to an address that cannot be reached any more (blocked us)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.channel == channel, OutboxMessage.address == address,
               OutboxMessage.status == OutboxStatus.QUEUED)
        .values(status=OutboxStatus.FAILED, last_error=note[:500])
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


