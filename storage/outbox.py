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

Claims and heartbeats are stamped with the wall clock (keep the hosts in sync with NTP), never
the program's clock, which a training session may move (WARMLINE_NOW).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Update, and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased

from storage.base import table_of, utcnow
from storage.models import (
    ActionToken,
    ChannelAddress,
    DeliveryWorkerLease,
    OutboxLane,
    OutboxMessage,
    OutboxStatus,
    Preference,
)

UNROUTED = "none"  # the channel of a message whose person has no address yet
SMS = "sms"  # text messages to a basic phone: templates only, for families with no chat app
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


def _pick(addresses: Sequence[tuple[str, str]], channel: str | None) -> tuple[str, str] | None:
    """The address rule, over a person's unblocked (channel, address) pairs, most recently used
    first: on `channel` if they can be reached there (a family member's chosen channel), else
    the last chat address they used, and SMS only for someone with no chat address at all — it
    carries approved templates only, and a person who chats hears more warmly there."""
    chat = [a for a in addresses if a[0] != SMS]
    if channel and channel != SMS:
        for pair in chat:
            if pair[0] == channel:
                return pair
    if chat:
        return chat[0]
    return next((a for a in addresses if a[0] == SMS), None)


def _by_recency(person_ids: Sequence[int]) -> Any:
    return (select(ChannelAddress)
            .where(ChannelAddress.person_id.in_(list(person_ids)), ChannelAddress.blocked_at.is_(None))
            .order_by(ChannelAddress.person_id, ChannelAddress.last_inbound_at.desc().nulls_last(),
                      ChannelAddress.id.desc()))


async def preferred_address(session: AsyncSession, person_id: int,
                            channel: str | None = None) -> ChannelAddress | None:
    """Where to reach a person (the rule in `_pick`), as their ChannelAddress."""
    rows = list(await session.scalars(_by_recency([person_id])))
    chosen = _pick([(a.channel, a.address) for a in rows], channel)
    return next((a for a in rows if (a.channel, a.address) == chosen), None)


async def preferred_addresses(session: AsyncSession, person_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """`preferred_address` for many people in two queries: {person_id: (channel, address)}."""
    ids = sorted(set(person_ids))
    if not ids:
        return {}
    pairs: dict[int, list[tuple[str, str]]] = {}
    chosen: dict[int, str] = {}
    for i in range(0, len(ids), 10_000):  # PostgreSQL takes at most 65,535 parameters a statement
        part = ids[i:i + 10_000]
        for row in await session.execute(_by_recency(part).with_only_columns(
                ChannelAddress.person_id, ChannelAddress.channel, ChannelAddress.address)):
            pairs.setdefault(row[0], []).append((row[1], row[2]))
        chosen.update((person_id, str(channel)) for person_id, channel in await session.execute(
            select(Preference.person_id, Preference.channel).where(
                Preference.person_id.in_(part), Preference.channel.is_not(None))))
    out: dict[int, tuple[str, str]] = {}
    for person_id, found in pairs.items():
        pick = _pick(found, chosen.get(person_id))
        if pick is not None:
            out[person_id] = pick
    return out


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


# Messages that wait for the end of quiet hours when an address is linked in them (an alert does not).
QUIET_KINDS = frozenset({"reminder", "greeting", "digest"})


async def route_waiting(session: AsyncSession, person_id: int, channel: str, address: str, *,
                        quiet_until: datetime | None = None) -> int:
    """Give rows queued while a person had no address (channel "none") their new address.

    Called wherever an address is first linked to a person, so an alert written before a
    coordinator ever opened the bot still reaches them; their buttons move along. With
    `quiet_until` (the link is made in quiet hours), a digest, reminder or greeting that was due
    earlier waits until then — as scheduled, so it does not hold back the person's replies.
    """
    rows = list(await session.scalars(select(OutboxMessage).where(
        OutboxMessage.channel == UNROUTED, OutboxMessage.person_id == person_id,
        OutboxMessage.status == OutboxStatus.QUEUED)))
    for row in rows:
        row.channel, row.address, row.last_error = channel, address, None
        if quiet_until is not None and row.kind in QUIET_KINDS and row.next_attempt_at < quiet_until:
            row.next_attempt_at = row.not_before = quiet_until
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
    row = OutboxMessage(**_values(kind=kind, recipient=recipient, payload=payload, key=key, now=now,
                                  priority=priority, not_before=not_before, expires_at=expires_at,
                                  claimed_by=claimed_by))
    session.add(row)
    if flush:
        await session.flush()
    return row


def _values(*, kind: str, recipient: Recipient, payload: dict[str, Any], key: str, now: datetime,
            priority: int | None = None, not_before: datetime | None = None,
            expires_at: datetime | None = None, claimed_by: str | None = None) -> dict[str, Any]:
    """One outbox row's columns: its lane, its first due time, its claim, its routing note."""
    start = not_before or now
    return dict(
        idempotency_key=key, channel=recipient.channel, address=recipient.address,
        person_id=recipient.person_id, kind=kind, payload=payload,
        priority=int(lane_of(kind) if priority is None else priority),
        created_at=now, not_before=start, next_attempt_at=start, expires_at=expires_at,
        status=OutboxStatus.SENDING if claimed_by else OutboxStatus.QUEUED,
        claimed_by=claimed_by, claimed_at=utcnow() if claimed_by else None,
        last_error=None if recipient.routed else NO_ADDRESS_NOTE,
    )




async def enqueue_claimed(session: AsyncSession, *, kind: str, recipient: Recipient,
                          payloads: Sequence[tuple[str, dict[str, Any]]], now: datetime) -> list[int]:
    """A step's replies (key, payload), written already claimed by this process for its fast
    path, as plain INSERTs: this runs on every message, where the unit of work's bookkeeping
    for a new object costs more than the statement. Same columns as `enqueue`."""
    claimer, statement = this_process(), _statements().insert_returning_id
    return [(await session.execute(statement, _values(
        kind=kind, recipient=recipient, payload=payload, key=key, now=now, claimed_by=claimer)
    )).scalar_one() for key, payload in payloads]


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
            await session.execute(insert(_table(ActionToken)), tokens)
        await session.execute(insert(_table(OutboxMessage)), rows)
    return written


_table = table_of


@dataclass(frozen=True)
class _Statements:
    """The statements of every step's fast path, built once: building a statement costs more
    than running the cached, compiled one."""

    insert_returning_id: Any
    pending_ahead: Any
    mark_sent: Any


@cache
def _statements() -> _Statements:
    table = _table(OutboxMessage)
    return _Statements(
        insert_returning_id=insert(table).returning(table.c.id),
        pending_ahead=select(table.c.id).where(
            table.c.channel == bindparam("channel"), table.c.address == bindparam("address"),
            table.c.id < bindparam("before_id"), table.c.status.in_(PENDING),
            table.c.not_before <= bindparam("now", type_=table.c.not_before.type)).limit(1),
        mark_sent=update(table).where(table.c.id == bindparam("row_id"), table.c.status != OutboxStatus.SENT).values(
            attempts=table.c.attempts + 1, status=OutboxStatus.SENT,
            sent_at=bindparam("at", type_=table.c.sent_at.type),
            platform_message_id=func.coalesce(bindparam("platform_id", type_=table.c.platform_message_id.type),
                                              table.c.platform_message_id),
            last_error=None, claimed_by=None, claimed_at=None),
    )


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


def earlier_pending(row: type[OutboxMessage] | Any, now: datetime) -> Any:
    """SQL: some row to the same address, written before `row`, is still pending and due."""
    before = aliased(OutboxMessage)
    return exists().where(and_(
        before.channel == row.channel, before.address == row.address, before.id < row.id,
        before.status.in_(PENDING), before.not_before <= now))


# ------------------------------------------------------------------------ claiming


@dataclass(frozen=True)
class Claim:
    """A row a sender holds: what it needs to send it, detached from any session."""

    id: int
    channel: str
    address: str
    kind: str
    payload: dict[str, Any]
    person_id: int | None
    attempts: int
    expires_at: datetime | None
    priority: int


_CLAIM_COLUMNS = (OutboxMessage.id, OutboxMessage.channel, OutboxMessage.address, OutboxMessage.kind,
                  OutboxMessage.payload, OutboxMessage.person_id, OutboxMessage.attempts,
                  OutboxMessage.expires_at, OutboxMessage.priority)


def _is_pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def _take(session: AsyncSession, ids: Sequence[int], claimer: str) -> list[Claim]:
    """Claim exactly the rows among `ids` still queued (another sender may have been quicker)."""
    if not ids:
        return []
    rows = (await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.status == OutboxStatus.QUEUED)
        .values(status=OutboxStatus.SENDING, claimed_by=claimer, claimed_at=utcnow())
        .returning(*_CLAIM_COLUMNS)
        .execution_options(synchronize_session=False))).all()
    return sorted((Claim(*row) for row in rows), key=lambda c: c.id)


async def claim_batch(session: AsyncSession, *, claimer: str, now: datetime, channels: Sequence[str],
                      limit: int, lanes: Sequence[int] | None = None,
                      skip_addresses: Sequence[str] = ()) -> list[Claim]:
    """Claim up to `limit` due rows for `channels`: the first pending row of each address only
    (first in, first out), the highest lane first, then the oldest due.

    The due rows are read first and claimed only if there are any, so an idle poll writes
    nothing; on PostgreSQL the read locks them (`FOR UPDATE SKIP LOCKED`), so concurrent
    workers take different rows; elsewhere the conditional update decides a race.
    """
    if not channels or limit <= 0:
        return []
    due = (select(OutboxMessage.id)
           .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.next_attempt_at <= now,
                  OutboxMessage.channel.in_(list(channels)), ~earlier_pending(OutboxMessage, now))
           .order_by(OutboxMessage.priority, OutboxMessage.next_attempt_at, OutboxMessage.id)
           .limit(limit))
    if lanes is not None:
        due = due.where(OutboxMessage.priority.in_([int(lane) for lane in lanes]))
    if skip_addresses:  # spaced by the sender's per-recipient interval: a later round takes them
        due = due.where(OutboxMessage.address.not_in(list(skip_addresses)))
    if _is_pg(session):
        due = due.with_for_update(skip_locked=True)
    ids = list(await session.scalars(due))
    return await _take(session, ids, claimer)


async def next_due(session: AsyncSession, *, now: datetime, channels: Sequence[str],
                   lanes: Sequence[int]) -> datetime | None:
    """When the next queued row of these lanes falls due after `now` (a sender's wake-up time;
    rows already due but held behind an earlier one are not counted, so it never spins)."""
    return await session.scalar(
        select(func.min(OutboxMessage.next_attempt_at))
        .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.next_attempt_at > now,
               OutboxMessage.channel.in_(list(channels)),
               OutboxMessage.priority.in_([int(lane) for lane in lanes])))


async def claim_next(session: AsyncSession, *, claimer: str, now: datetime, channel: str, address: str,
                     lanes: Sequence[int] | None = None) -> Claim | None:
    """Claim the next row to one address once the one before it is done (a sender working
    through one person's queue in order); None if it is not due, not in `lanes`, or held."""
    head = (select(OutboxMessage.id)
            .where(OutboxMessage.channel == channel, OutboxMessage.address == address,
                   OutboxMessage.status.in_(PENDING), OutboxMessage.not_before <= now)
            .order_by(OutboxMessage.id).limit(1))
    if _is_pg(session):
        head = head.with_for_update(skip_locked=True)
    first = await session.scalar(head)
    if first is None:
        return None
    row = await session.get(OutboxMessage, first)
    if (row is None or row.status != OutboxStatus.QUEUED or row.next_attempt_at > now
            or (lanes is not None and row.priority not in lanes)):
        return None
    claims = await _take(session, [first], claimer)
    return claims[0] if claims else None


async def claim_ahead(session: AsyncSession, *, claimer: str, now: datetime, channel: str,
                      address: str, before_id: int) -> list[Claim] | None:
    """For a sender about to deliver row `before_id` (the fast path): claim the pending rows to
    the same address written before it, so they go first. [] if there are none (the usual
    case, answered by one read); None if one of them cannot go now (being sent elsewhere, or
    waiting out a retry) — then `before_id` must wait its turn in the queue.
    """
    ahead = list(await session.execute(
        select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.next_attempt_at)
        .where(OutboxMessage.channel == channel, OutboxMessage.address == address,
               OutboxMessage.id < before_id, OutboxMessage.status.in_(PENDING),
               OutboxMessage.not_before <= now)
        .order_by(OutboxMessage.id)))
    if not ahead:
        return []
    if any(status != OutboxStatus.QUEUED or at > now for _id, status, at in ahead):
        return None
    claims = await _take(session, [row_id for row_id, _s, _a in ahead], claimer)
    if len(claims) != len(ahead):  # another sender took one meanwhile: give ours back, wait
        await release(session, [c.id for c in claims], claimer)
        return None
    return claims


async def pending_ahead(session: AsyncSession, *, channel: str, address: str, before_id: int,
                        now: datetime) -> bool:
    """Whether `claim_ahead` would find anything: asked inside a step's own transaction, so the
    usual answer (nothing) costs the fast path no transaction of its own."""
    found = await session.execute(_statements().pending_ahead, {
        "channel": channel, "address": address, "before_id": before_id, "now": now})
    return found.first() is not None


async def lift(session: AsyncSession, *, channel: str, address: str, before_id: int, priority: int) -> None:
    """Raise the pending rows ahead of `before_id` to its lane: a reply waiting behind a
    greeting must not also wait for the whole county's greetings."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.channel == channel, OutboxMessage.address == address,
               OutboxMessage.id < before_id, OutboxMessage.status.in_(PENDING),
               OutboxMessage.priority > priority)
        .values(priority=priority).execution_options(synchronize_session=False))


async def release(session: AsyncSession, ids: Sequence[int], claimer: str, *,
                  not_before: datetime | None = None, priority: int | None = None) -> int:
    """Give claimed rows back to the queue untouched (no attempt counted)."""
    if not ids:
        return 0
    values: dict[str, Any] = {"status": OutboxStatus.QUEUED, "claimed_by": None, "claimed_at": None}
    if not_before is not None:
        values["next_attempt_at"] = not_before
    if priority is not None:
        values["priority"] = priority
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.status == OutboxStatus.SENDING,
               OutboxMessage.claimed_by == claimer)
        .values(**values).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


# ------------------------------------------------------------------- worker leases


async def heartbeat(session: AsyncSession, worker_id: str, at: datetime | None = None) -> None:
    """Say this claimer is alive (its claimed rows stay its own)."""
    now = at or utcnow()
    lease = await session.get(DeliveryWorkerLease, worker_id)
    if lease is None:
        session.add(DeliveryWorkerLease(id=worker_id, started_at=now, heartbeat_at=now))
    else:
        lease.heartbeat_at = now


async def end_lease(session: AsyncSession, worker_id: str) -> None:
    await session.execute(delete(DeliveryWorkerLease).where(DeliveryWorkerLease.id == worker_id))


async def release_dead(session: AsyncSession, lease: timedelta, *, keep: Sequence[int] = (),
                       note: str = "re-queued: its sender stopped") -> int:
    """Queue again the rows claimed by senders whose heartbeat is older than `lease`.

    A dead process's rows come back `lease` after its last heartbeat. A claimer with no lease
    at all (it has not beaten yet, or an older version's "fastpath") keeps its rows until they
    are `lease` old.
    """
    now = utcnow()
    cutoff = now - lease
    alive = select(DeliveryWorkerLease.id).where(DeliveryWorkerLease.heartbeat_at >= cutoff)
    lapsed = select(DeliveryWorkerLease.id).where(DeliveryWorkerLease.heartbeat_at < cutoff)
    statement = (update(OutboxMessage)
                 .where(OutboxMessage.status == OutboxStatus.SENDING,
                        or_(OutboxMessage.claimed_by.is_(None), OutboxMessage.claimed_by.not_in(alive)),
                        or_(OutboxMessage.claimed_by.in_(lapsed), OutboxMessage.claimed_at < cutoff,
                            OutboxMessage.claimed_at.is_(None)))
                 .values(status=OutboxStatus.QUEUED, claimed_by=None, claimed_at=None, last_error=note)
                 .execution_options(synchronize_session=False))
    if keep:
        statement = statement.where(OutboxMessage.id.not_in(list(keep)))
    result = await session.execute(statement)
    await session.execute(delete(DeliveryWorkerLease).where(
        DeliveryWorkerLease.heartbeat_at < now - 10 * lease))  # long gone: forget them
    return int(getattr(result, "rowcount", 0) or 0)


async def expire_due(session: AsyncSession, now: datetime, note: str) -> int:
    """Mark queued rows past their window expired: never sent late."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.expires_at.is_not(None),
               OutboxMessage.expires_at <= now)
        .values(status=OutboxStatus.EXPIRED, last_error=note)
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


# ------------------------------------------------------------------------ recording


async def mark_sent(session: AsyncSession, sent: Sequence[tuple[int, str | None, datetime]]) -> None:
    """`record_sent` for rows delivered, by id, with no ORM objects (it runs after every step).
    A row already recorded as sent is left as it is."""
    await session.execute(_statements().mark_sent, [{"row_id": row_id, "platform_id": platform_id, "at": at}
                                      for row_id, platform_id, at in sent])


def record_sent(row: OutboxMessage, now: datetime, platform_message_id: str | None = None) -> None:
    row.attempts += 1
    row.status = OutboxStatus.SENT
    row.sent_at = now
    row.platform_message_id = platform_message_id or row.platform_message_id
    row.last_error = None
    row.claimed_by = row.claimed_at = None


def record_retry(row: OutboxMessage, next_attempt_at: datetime, error: str, *, attempt: bool = True) -> None:
    """Queued again for `next_attempt_at`; `attempt=False` when nothing reached the platform."""
    row.attempts += 1 if attempt else 0
    row.status = OutboxStatus.QUEUED
    row.next_attempt_at = next_attempt_at
    row.last_error = error[:500]
    row.claimed_by = row.claimed_at = None


def record_final(row: OutboxMessage, status: OutboxStatus, error: str, *, attempt: bool = True) -> None:
    """Failed or expired for good, with the reason an operator sees in `warmline outbox`."""
    row.attempts += 1 if attempt else 0
    row.status = status
    row.last_error = error[:500]
    row.claimed_by = row.claimed_at = None


def record_receipt(row: OutboxMessage, *, delivered: bool, code: str) -> bool:
    """A platform's delivery receipt (SMS) for a row already handed over: delivered clears a
    stale error; a failure marks the row failed. True when it turned the row failed."""
    if delivered:
        if row.status == OutboxStatus.SENT:
            row.last_error = None
        return False
    if row.status == OutboxStatus.FAILED:
        return False  # a receipt pushed again
    record_final(row, OutboxStatus.FAILED, f"receipt: {code}", attempt=False)
    return True


def record_erased(row: OutboxMessage, text: str) -> None:
    """A message naming an erased family: its body replaced by `text`, and never sent."""
    row.payload = {"text": text, "options": []}
    if row.status in (OutboxStatus.QUEUED, OutboxStatus.FAILED):
        row.status = OutboxStatus.EXPIRED


# ------------------------------------------------------------------ an operator's actions
# Only a `failed` row can be retried or cancelled: a queued or sending row belongs to the
# delivery worker, a sent one is done. Retrying puts it back in the queue as if new (attempts
# from zero, due now), so the worker's usual limits and backoff apply; cancelling marks it
# `expired` and says who gave it up. Both are conditional updates, so two clicks (or two
# operators) change a row once.


async def retry_failed(session: AsyncSession, message_id: int, now: datetime) -> bool:
    result = await session.execute(update(OutboxMessage).where(
        OutboxMessage.id == message_id, OutboxMessage.status == OutboxStatus.FAILED).values(
        status=OutboxStatus.QUEUED, attempts=0, next_attempt_at=now, claimed_by=None, claimed_at=None))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def cancel_failed(session: AsyncSession, message_id: int, now: datetime, by: str) -> bool:
    result = await session.execute(update(OutboxMessage).where(
        OutboxMessage.id == message_id, OutboxMessage.status == OutboxStatus.FAILED).values(
        status=OutboxStatus.EXPIRED, last_error=f"cancelled by {by}"[:500], claimed_by=None, claimed_at=None))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ bodies
# A row records who was sent what kind of message, when, and how it went; its body (`payload`:
# a visit note, a family's words, an intake summary) is sensitive and serves no one once the
# message is delivered or given up. After `[delivery] keep_bodies_days` the body is set to NULL;
# the row stays, so counts, the idempotency key (no message planned twice) and `warmline
# outbox` keep working.

FINISHED = (OutboxStatus.SENT, OutboxStatus.EXPIRED, OutboxStatus.FAILED)  # rows whose story is over


def purge_statement(now: datetime, keep: timedelta) -> Update:
    finished_at = func.coalesce(OutboxMessage.sent_at, OutboxMessage.created_at)
    return (update(OutboxMessage)
            .where(OutboxMessage.status.in_(FINISHED), OutboxMessage.payload.is_not(None),
                   finished_at < now - keep)
            .values(payload=None)
            .execution_options(synchronize_session=False))


def purge_delivered_bodies(session: Session, now: datetime, keep: timedelta) -> int:
    """Blank the bodies of messages finished more than `keep` ago; how many were blanked."""
    return int(session.execute(purge_statement(now, keep)).rowcount or 0)  # type: ignore[attr-defined]


async def apurge_delivered_bodies(session: AsyncSession, now: datetime, keep: timedelta) -> int:
    result = await session.execute(purge_statement(now, keep))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
