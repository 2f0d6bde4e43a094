"""Writing a step's replies: as few messages as the platform allows, each one an outbox row.

A step's replies are written in the step's own transaction through the outbox's one writer
(storage.outbox), claimed by this process for the fast path, so the channel sends them right
after the commit and the delivery worker picks them up if the process dies first (its lease
lapses).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine.context import new_token, payload_of
from dialogs.engine.types import Inbound, Outgoing, Reply
from storage import outbox

Written = Callable[[], Awaitable[list[Outgoing]]]  # the rows to deliver, once they are known


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


async def _fast_path_rows(session: AsyncSession, inbound: Inbound, person_id: int | None,
                          payloads: list[tuple[str, dict]], now: datetime) -> Written:
    recipient = outbox.Recipient(inbound.channel, inbound.address, person_id)
    written = await outbox.enqueue_claimed(session, kind="reply", recipient=recipient, payloads=payloads,
                                           now=now)

    async def outgoing() -> list[Outgoing]:
        ids, clear = await written()
        return [Outgoing(i, inbound.channel, inbound.address, payload, first_in_line=clear)
                for i, (_k, payload) in zip(ids, payloads, strict=True)]

    return outgoing


async def queue_replies(session: AsyncSession, inbound: Inbound, replies: Sequence[Reply], *,
                        key_prefix: str, person_id: int | None, tokens: dict[str, str],
                        now: datetime) -> Written:
    """The merged replies as outbox rows keyed `<key_prefix>:<n>`; buttons get their tokens.

    Awaiting what it returns gives the rows to deliver (after the step's commit: see
    `storage.outbox.enqueue_claimed`)."""
    payloads = [(f"{key_prefix}:{i}", payload_of(reply, [tokens.get(opt.label, "") for opt in reply.options]))
                for i, reply in enumerate(merge_replies(replies))]
    return await _fast_path_rows(session, inbound, person_id, payloads, now)


async def queue_apology(session: AsyncSession, inbound: Inbound, text: str,
                        now: datetime) -> Outgoing:
    """The kind "please try again" after a failed step, in a transaction of its own."""
    key = f"error:{inbound.channel}:{inbound.address}:{new_token()}"
    written = await _fast_path_rows(session, inbound, None, [(key, payload_of(Reply(text)))], now)
    (apology,) = await written()
    return apology
