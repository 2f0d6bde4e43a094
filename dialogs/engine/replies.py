"""Writing a step's replies: as few messages as the platform allows, each one an outbox row.

A step's replies are written in the step's own transaction, claimed by the fast path, so the
channel sends them right after the commit and the delivery worker picks them up if the process
dies first. Until the outbox has one writer of its own (issue 15, core-outbox), this is the
runner's only way into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine.context import new_token, payload_of
from dialogs.engine.types import Inbound, Outgoing, Reply
from storage.models import OutboxMessage, OutboxStatus


def merge_replies(replies: Sequence[Reply]) -> list[Reply]:
    """A step's replies as the fewest messages: texts joined by a blank line.

    A reply with options ends its message (the buttons go under the last words), and one with
    an attachment travels alone (a caption has its own limit). Splitting a text longer than a
    platform allows is the channel sender's job (Telegram: 4096 characters, buttons on the last
    part). One message per step saves the platform's per-chat budget and keeps a fast answer
    from racing the rest of the reply.
    """
    merged: list[Reply] = []
    texts: list[str] = []
    for reply in replies:
        if reply.attachment is not None:
            if texts:
                merged.append(Reply("\n\n".join(texts)))
                texts = []
            merged.append(reply)
            continue
        if reply.text:
            texts.append(reply.text)
        if reply.options:
            merged.append(Reply("\n\n".join(texts), reply.options))
            texts = []
    if texts:
        merged.append(Reply("\n\n".join(texts)))
    return merged


def _fast_path_row(key: str, inbound: Inbound, person_id: int | None, payload: dict,
                   now: datetime) -> OutboxMessage:
    return OutboxMessage(
        idempotency_key=key, channel=inbound.channel, address=inbound.address, kind="reply",
        person_id=person_id, payload=payload, status=OutboxStatus.SENDING,
        claimed_by="fastpath", claimed_at=now, created_at=now, next_attempt_at=now)


async def queue_replies(session: AsyncSession, inbound: Inbound, replies: Sequence[Reply], *,
                        key_prefix: str, person_id: int | None, tokens: dict[str, str],
                        now: datetime) -> list[Outgoing]:
    """The merged replies as outbox rows keyed `<key_prefix>:<n>`; buttons get their tokens."""
    rows = []
    for i, reply in enumerate(merge_replies(replies)):
        payload = payload_of(reply, [tokens.get(opt.label, "") for opt in reply.options])
        message = _fast_path_row(f"{key_prefix}:{i}", inbound, person_id, payload, now)
        session.add(message)
        rows.append(message)
    await session.flush()
    return [Outgoing(m.id, m.channel, m.address, m.payload or {}) for m in rows]


async def queue_apology(session: AsyncSession, inbound: Inbound, text: str,
                        now: datetime) -> Outgoing:
    """The kind "please try again" after a failed step, in a transaction of its own."""
    message = _fast_path_row(f"error:{inbound.channel}:{inbound.address}:{new_token()}", inbound,
                             None, payload_of(Reply(text)), now)
    session.add(message)
    await session.flush()
    return Outgoing(message.id, message.channel, message.address, message.payload or {})
