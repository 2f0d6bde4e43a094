"""What every part of the outbox shares: lanes, the claimer id, a recipient, the statements of
every step's fast path."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, exists, func, insert, literal_column, update

from storage.base import table_of, utcnow
from storage.models import (
    OutboxLane,
    OutboxMessage,
    OutboxStatus,
)
from storage.prepared import Prepared

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


_claimer: list[str] = []  # this process's claimer id, once made; a forked child starts without


def this_process() -> str:
    """This process's claimer id (host:pid:random), the same for its fast path and its worker,
    whose heartbeat keeps the fast path's claims alive. Made once; a forked child makes its own
    (asked on every step: a pid lookup each time was a system call per step)."""
    if not _claimer:
        _claimer.append(f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}")
    return _claimer[0]


os.register_at_fork(after_in_child=_claimer.clear)


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




@dataclass(frozen=True)
class FastPath:
    """The statements of every step's fast path, built once: building a statement costs more
    than running the cached, compiled one."""

    insert_returning_id: Prepared  # and whether a pending row to the same address is ahead of it
    mark_sent: Prepared


def row_values(*, kind: str, recipient: Recipient, payload: dict[str, Any], key: str, now: datetime,
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


# every column `row_values` gives a new row, in its order (a sample row's keys)
_ROW_COLUMNS = tuple(row_values(kind="reply", recipient=Recipient(UNROUTED, ""), payload={}, key="",
                                now=datetime(2000, 1, 1, tzinfo=UTC), claimed_by="-"))


@cache
def fast_path() -> FastPath:
    """(The reply row's columns are the ones `row_values` gives.)"""
    table = table_of(OutboxMessage)
    ahead = table.alias("ahead")
    # Is a pending row to the same address ahead of the one just written? The address comes in
    # as bound parameters (`ahead_channel`, `ahead_address`, `ahead_at`: the row's own values),
    # not as references to the new row: SQLite cannot search an index with a RETURNING row's
    # columns and would walk every pending row by status (a broadcast's thousands, on every
    # reply). "outbox.id" is the row just written, spelt out because SQLAlchemy renders
    # RETURNING columns without table names on SQLite.
    queue_check: Any = exists().where(
        ahead.c.channel == bindparam("ahead_channel", type_=table.c.channel.type),
        ahead.c.address == bindparam("ahead_address", type_=table.c.address.type),
        ahead.c.status.in_([literal_column(f"'{status.value}'") for status in PENDING]),
        ahead.c.id < literal_column("outbox.id"),
        ahead.c.not_before <= bindparam("ahead_at", type_=table.c.not_before.type))
    return FastPath(
        insert_returning_id=Prepared(insert(table).returning(table.c.id, queue_check),
                                     keys=(*_ROW_COLUMNS, "ahead_channel", "ahead_address", "ahead_at")),
        mark_sent=Prepared(update(table).where(table.c.id == bindparam("row_id"), table.c.status != OutboxStatus.SENT)
                           .values(attempts=table.c.attempts + 1, status=OutboxStatus.SENT,
                                   sent_at=bindparam("at", type_=table.c.sent_at.type),
                                   platform_message_id=func.coalesce(
                                       bindparam("platform_id", type_=table.c.platform_message_id.type),
                                       table.c.platform_message_id),
                                   last_error=None, claimed_by=None, claimed_at=None),
                           keys=("row_id", "at", "platform_id")),
    )
