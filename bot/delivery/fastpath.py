"""Sending a step's replies right after its commit, recording each result on its outbox row.

If the process dies between commit and send, the rows stay claimed by "fastpath" and the
delivery worker re-queues them once the claim is stale: a reply is never lost, and can be
duplicated only if the process died after the platform accepted it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from bot.delivery.base import ChannelSender, SendRequest, SendResult
from bot.delivery.outcome import RetryPolicy, apply_result
from dialogs.engine.types import Outgoing
from storage.db import Database
from storage.models import OutboxMessage, OutboxStatus


async def deliver_now(db: Database, sender: ChannelSender, outgoing: Sequence[Outgoing],
                      now_fn: Callable[[], datetime], policy: RetryPolicy | None = None,
                      ) -> list[SendResult]:
    """Send in order; stop at the first failure so later replies do not overtake it."""
    results: list[tuple[int, SendResult]] = []
    for message in outgoing:
        result = await sender.send(SendRequest(message.outbox_id, message.channel, message.address,
                                               "reply", message.payload))
        results.append((message.outbox_id, result))
        if not result.ok:
            break
    async with db.async_session() as session:
        for outbox_id, result in results:
            row = await session.get(OutboxMessage, outbox_id)
            if row is not None:
                await apply_result(session, row, result, now_fn(), policy)
        # replies after a failure stay queued for the worker, in order
        for message in outgoing[len(results):]:
            row = await session.get(OutboxMessage, message.outbox_id)
            if row is not None:
                row.status = OutboxStatus.QUEUED
                row.claimed_by = None
                row.claimed_at = None
    return [r for _, r in results]
