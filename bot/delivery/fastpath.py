"""Sending a step's replies right after its commit, recording each result on its outbox row.

The runner writes a step's replies already claimed by this process (storage.outbox.this_process),
so nothing else sends them meanwhile. Before sending, the fast path looks for earlier messages
to the same address that are still pending: if they can go now they go first (a reminder queued
a minute ago arrives before the answer to what the person just typed); if one cannot (it is
being sent by a worker, or waits out a retry) the replies are handed to the queue behind it,
and that message is lifted to the reply lane so the worker takes it next. A later message never
overtakes an earlier one.

If the process dies between commit and send, the rows stay claimed by it until its worker lease
lapses (`lease_seconds`), then the delivery worker sends them: a reply is never lost, and is
duplicated only if the process died after the platform accepted it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime

from bot.delivery.base import ChannelSender, SendRequest, SendResult, request_of
from bot.delivery.outcome import RetryPolicy, apply_result
from dialogs.engine.types import Outgoing
from storage import outbox
from storage.db import Database
from storage.models import OutboxLane, OutboxMessage, OutboxStatus
from storage.prepared import pipelined


async def deliver_now(db: Database, sender: ChannelSender, outgoing: Sequence[Outgoing],
                      now_fn: Callable[[], datetime], policy: RetryPolicy | None = None,
                      ) -> list[SendResult]:
    """Send in order, behind what is pending to the same address; stop at the first failure so
    later replies do not overtake it. Returns the results of the sends made (earlier pending
    messages first), [] if the replies were left to the queue."""
    if not outgoing:
        return []
    claimer = outbox.this_process()
    ids = [m.outbox_id for m in outgoing if m.outbox_id]
    first = outgoing[0]
    ahead: list[outbox.Claim] = []
    if ids and not all(m.first_in_line for m in outgoing):
        async with db.async_session() as session:
            found = await outbox.claim_ahead(session, claimer=claimer, now=now_fn(), channel=first.channel,
                                             address=first.address, before_id=min(ids))
            if found is None:  # an earlier message is not done: the replies wait their turn
                await outbox.release(session, ids, claimer)
                await outbox.lift(session, channel=first.channel, address=first.address,
                                  before_id=min(ids), priority=OutboxLane.INTERACTIVE)
                return []
            ahead = found
    requests = [request_of(c) for c in ahead] + [
        SendRequest(m.outbox_id, m.channel, m.address, "reply", m.payload, priority=OutboxLane.INTERACTIVE)
        for m in outgoing]
    results: list[tuple[int, SendResult, datetime]] = []
    for request in requests:
        result = await sender.send(request)
        results.append((request.outbox_id, result, now_fn()))  # a retry_after counts from here
        if not result.ok:
            break
    sent = [(outbox_id, result.platform_message_id, at) for outbox_id, result, at in results
            if outbox_id and result.ok]
    if len(results) == len(requests) and all(result.ok for _, result, _ in results):
        await _ledger(db).record(sent)  # the usual case: all sent, recorded with other chats' sends
        return [r for _, r, _ in results]
    async with db.async_session() as session:
        if sent:
            await outbox.mark_sent(session, sent)
        for outbox_id, result, at in results:
            if result.ok:
                continue
            row = await session.get(OutboxMessage, outbox_id) if outbox_id else None
            if row is None or row.status == OutboxStatus.SENT:
                continue
            ours = row.status == OutboxStatus.SENDING and row.claimed_by == claimer
            if ours:  # (a send that happened was recorded above even if re-queued meanwhile)
                await apply_result(session, row, result, at, policy)
        # what was not sent after a failure stays queued for the worker, in order
        await outbox.release(session, [r.outbox_id for r in requests[len(results):] if r.outbox_id],
                             claimer)
    return [r for _, r, _ in results]


class SentLedger:
    """Records fast-path sends as sent, the sends of every chat that finished meanwhile in one
    transaction.

    Why: with many chats answered at once, one transaction per reply to say "sent" cost about a
    tenth of a step. A send waits for its own record before its step ends (the chat's next
    step then sees it as sent, not as pending ahead of its reply); the first send after a quiet
    moment is recorded at once, and those finishing while a record is being written go together
    in the next one.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._waiting: list[tuple[int, str | None, datetime]] = []
        self._recorded: asyncio.Future[None] | None = None  # settles when `_waiting` is written
        self._writer: asyncio.Task[None] | None = None  # writing while it runs

    async def record(self, sent: Sequence[tuple[int, str | None, datetime]]) -> None:
        if not sent:
            return
        loop = asyncio.get_running_loop()
        self._waiting.extend(sent)
        if self._recorded is None:
            self._recorded = loop.create_future()
        recorded = self._recorded
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write())
        await asyncio.shield(recorded)

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            recorded, self._recorded = self._recorded, None
            assert recorded is not None
            try:
                async with self.db.async_session() as session, pipelined(session, commit=True):
                    await outbox.mark_sent(session, batch)
            except Exception as exc:  # each waiting send sees the failure, as if it wrote alone
                recorded.set_exception(exc)
            else:
                recorded.set_result(None)


_ledgers: weakref.WeakKeyDictionary[Database, tuple[asyncio.AbstractEventLoop, SentLedger]] = (
    weakref.WeakKeyDictionary())


def _ledger(db: Database) -> SentLedger:
    """The database's ledger on this event loop (a test may run several loops on one database)."""
    loop = asyncio.get_running_loop()
    found = _ledgers.get(db)
    if found is None or found[0] is not loop:
        found = _ledgers[db] = (loop, SentLedger(db))
    return found[1]
