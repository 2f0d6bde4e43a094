"""What keeps the bot durable: dialog sessions, inbound dedupe, the outbox, tokens and the audit log."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow
from storage.crypto import EncryptedJSON


class DialogSession(Base):
    """Where one (channel, address) is in a conversation; the only conversation state there is."""

    __tablename__ = "dialog_sessions"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    dialog: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str | None] = mapped_column(String(32))
    # what the person has answered so far (intake answers, a family's words): encrypted
    data: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON, default=dict)
    prompt: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]


class ProcessedInbound(Base):
    """A platform message id already handled, so a platform retry is processed once."""

    __tablename__ = "processed_inbound"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    inbound_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"


class OutboxLane(enum.IntEnum):
    """Which messages go first when the platform's budget is short: a person waiting for an
    answer before a person being told something before a county-wide send."""

    INTERACTIVE = 0  # replies to what someone just typed
    ALERT = 1  # one person telling another something now (alerts, escalations, forwards)
    BULK = 2  # broadcasts, digests, reminders, greetings, invitations


class OutboxMessage(Base):
    """Every outbound message, written in the same transaction as the change that caused it.

    Written, claimed and recorded only through `storage.outbox`.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "priority", "next_attempt_at"),
        Index("ix_outbox_recipient", "channel", "address", "status", "id"),
        Index("ix_outbox_claimed", "status", "claimed_by"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # reply | alert | reminder | greeting | ...
    # the message itself (visit notes, a family's words): encrypted; None once purged after
    # delivery ([delivery] keep_bodies_days, storage/outbox/recording.py)
    payload: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=OutboxLane.BULK)
    # When it may first go out (a reminder's time, the end of quiet hours); never moved by retries,
    # so a row waiting out a retry still holds back the later rows to the same address.
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    platform_message_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class ActionToken(Base):
    """An opaque button payload that stands for an action, resolved only for its own address."""

    __tablename__ = "action_tokens"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    action: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    used_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Who wrote or read what, about which household, and when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_household", "household_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # read | write | erase | export
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int | None]
    household_id: Mapped[int | None]
    detail: Mapped[str | None] = mapped_column(Text)


class Lease(Base):
    """A named, expiring lock (the scheduler on SQLite; cached platform tokens)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]


class DeliveryWorkerLease(Base):
    """A process that claims outbox rows, alive while its heartbeat is fresh.

    A row "sending" whose claimer's heartbeat has gone stale is queued again, so a killed
    process's rows come back within seconds instead of after a fixed claim timeout.
    """

    __tablename__ = "delivery_workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
