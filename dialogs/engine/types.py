"""The words a channel and a dialog share: what came in, what goes out, and the choices offered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.messages import Attachment, Option, Reply

__all__ = ["Attachment", "Inbound", "Option", "Outgoing", "Reply"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One thing a user did: typed text, pressed a button, shared a contact, or a platform event."""

    channel: str
    address: str
    text: str = ""
    option_token: str | None = None
    message_id: str | None = None
    contact_phone: str | None = None
    display_name: str | None = None
    event: str | None = None
    start_payload: str | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A committed outbox row that a channel should deliver now (the fast path)."""

    outbox_id: int
    channel: str
    address: str
    payload: dict[str, Any] = field(default_factory=dict)
    # Nothing to this address was pending ahead of the row when its step committed, so the fast
    # path can send it without asking the queue first (storage.outbox.enqueue_claimed).
    first_in_line: bool = False
