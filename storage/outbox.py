"""The outbox: the one module that writes, claims and records outbound messages.

Every message Warmline sends is first a row here, written in the same transaction as the change
that caused it (a step's replies, an alert, a reminder, a greeting, an invitation). Who a
message goes to — a person's preferred address, a family member's chosen channel, or channel
"none" (unrouted) until the person links an address — is decided here and nowhere else.

Order and priority, the two rules the senders rely on:
- **first in, first out per address**: a row is not claimed while an earlier row to the same
  (channel, address) is still pending — queued and due, waiting out a retry, or being sent —
  so a later message never overtakes an earlier one, across the fast path and every worker;
- **lanes**: replies to what someone just typed (INTERACTIVE) are claimed before alerts
  (ALERT), and those before county-wide sends (BULK); a reply stuck behind an earlier message
  lifts that message into its own lane, so it is never queued behind a broadcast.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import (
    ActionToken,
    ChannelAddress,
    OutboxLane,
    OutboxMessage,
    OutboxStatus,
    Preference,
)

UNROUTED = "none"  # the channel of a message whose person has no address yet
NO_ADDRESS_NOTE = "no_address: waits until the person is reachable"
PENDING = (OutboxStatus.QUEUED, OutboxStatus.SENDING)

# Kinds whose lane is not BULK. A kind not named here is bulk: it can wait for replies.
KIND_LANES: dict[str, OutboxLane] = {
    "reply": OutboxLane.INTERACTIVE,
    "alert": OutboxLane.ALERT,
    "escalation": OutboxLane.ALERT,
    "family_message": OutboxLane.ALERT,
    "family_reply": OutboxLane.ALERT,
}


_process_ids: dict[int, str] = {}


def this_process() -> str:
    """This process's claimer id (host:pid:random), the same for its fast path and its worker,
    whose heartbeat keeps the fast path's claims alive. Computed once per pid, so a forked
    child gets its own."""
    pid = os.getpid()
    if pid not in _process_ids:
        _process_ids[pid] = f"{socket.gethostname()[:32]}:{pid}:{secrets.token_hex(3)}"
    return _process_ids[pid]


def lane_of(kind: str) -> OutboxLane:
    return KIND_LANES.get(kind, OutboxLane.BULK)


@dataclass(frozen=True)
class Recipient:
    """Where a row goes: a channel address, and the person behind it when known."""

    channel: str
    address: str
    person_id: int | None = None

    @property
    def routed(self) -> bool:
        return self.channel != UNROUTED


# ------------------------------------------------------------------ address rules


async def preferred_address(session: AsyncSession, person_id: int,
                            channel: str | None = None) -> ChannelAddress | None:
    """Where to reach a person: the unblocked address they used last — on `channel` if they
    can be reached there (a family member's chosen channel), else on any channel."""
    query = (select(ChannelAddress)
             .where(ChannelAddress.person_id == person_id, ChannelAddress.blocked_at.is_(None))
             .order_by(ChannelAddress.last_inbound_at.desc().nulls_last(), ChannelAddress.id.desc()))
    if channel:
        chosen = (await session.scalars(query.where(ChannelAddress.channel == channel).limit(1))).first()
        if chosen is not None:
            return chosen
    return (await session.scalars(query.limit(1))).first()


async def person_recipient(session: AsyncSession, person_id: int, *,
                           hold_until_linked: bool = True) -> Recipient | None:
    """A person's recipient. Without an address: unrouted (channel "none", sent once they link
    one, see `route_waiting`) if `hold_until_linked`, else None (nobody to reach).

    Family members are reached on the channel they chose (their Preference) when they can be.
    """
    preference = await session.get(Preference, person_id)
    address = await preferred_address(session, person_id, preference.channel if preference else None)
    if address is not None:
        return Recipient(address.channel, address.address, person_id)
    if hold_until_linked:
        return Recipient(UNROUTED, str(person_id), person_id)
    return None


async def route_waiting(session: AsyncSession, person_id: int, channel: str, address: str) -> int:
    """Give rows queued while a person had no address (channel "none") their new address.

    Called wherever an address is first linked to a person, so an alert written before a
    coordinator ever opened the bot still reaches them; their buttons move along.
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
    start = not_before or now
    row = OutboxMessage(
        idempotency_key=key, channel=recipient.channel, address=recipient.address,
        person_id=recipient.person_id, kind=kind, payload=payload,
        priority=int(lane_of(kind) if priority is None else priority),
        created_at=now, not_before=start, next_attempt_at=start, expires_at=expires_at,
        status=OutboxStatus.SENDING if claimed_by else OutboxStatus.QUEUED,
        claimed_by=claimed_by, claimed_at=now if claimed_by else None,
        last_error=None if recipient.routed else NO_ADDRESS_NOTE,
    )
    session.add(row)
    if flush:
        await session.flush()
    return row


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


def earlier_pending(row: type[OutboxMessage] | Any, now: datetime) -> Any:
    """SQL: some row to the same address, written before `row`, is still pending and due."""
    before = aliased(OutboxMessage)
    return exists().where(and_(
        before.channel == row.channel, before.address == row.address, before.id < row.id,
        before.status.in_(PENDING), before.not_before <= now))
