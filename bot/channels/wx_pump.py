"""The five-second promise: each step answered passively in time, or through the API, exactly once.

WeChat and WeCom wait five seconds for the HTTP answer, then hang up and post the same message
again (three tries in all). The budget (`reply_budget_seconds`, default 4 s) counts from the
request's arrival — the deadline is taken on the route's first line and carried with the request.

Every platform message (by MsgId, or sender and CreateTime for events) gets a `Ticket`, shared by
its tries. Its step runs in the sender's lane: a `KeyedDispatcher` (bot/channels/dispatch.py)
keyed by the sender runs each user's steps in order, `[core] max_concurrent_steps` at a time;
a second one, keyed the same way, settles and sends the replies, so a slow platform API never
holds a step slot and a user's replies still keep their order. Exactly one of two things then
happens to the step's replies, decided by whoever gets there first (the `claimed` field; asyncio
runs one thing at a time):
- **passive**: a try still waiting inside its deadline takes the text; it is written to the HTTP
  answer only if, at the moment of writing, the deadline has not passed and the platform has not
  hung up — and only then recorded as sent. If the write comes too late, the reply goes through
  the API after all.
- **api**: nobody is waiting in time (the try timed out, was acknowledged at once because the
  queue was long, or the connection was gone), so the step's replies go out as one
  customer-service / app message.
A later try of the same message answers the stored passive text again (the platform did not get
it), or `success` when the replies went through the API — never an empty answer that loses them.

Admission control: the queue ahead of a new message (steps submitted and not finished) and a
moving average of step time estimate when it would be answered; when that does not fit in the
request's budget, the try is acknowledged at once and the reply follows through the API, instead
of every request slowing past five seconds together. At `max_queued_steps` waiting, a message is
not taken at all (nothing saved) and the sender is asked kindly to send it again.

The budget is kept by construction on the platform's clock, not only on ours: the deadline is
the earliest of arrival (its connection's accept, stamped by bot/http.py) + budget and the
platform's own timestamp + budget + 0.5 s, less four times the event loop's recent lateness
(bot/channels/wx_lag.py, at most half the budget): about two turns of the loop pass between the
platform's send and the accept, and two between the decision and the answer leaving. A
saturated process therefore answers `success` sooner, and its steps still run, in order, once
each.

Replies that go through the API leave in the user's order but hold no step or send slot while a
try is still deciding whether to take them passively; each API message takes a token of
`reply_per_second` (the platform limits calls per account) and runs on the channel's own
threads for replies (wechatpy is synchronous), so bulk sends of the delivery worker never queue
ahead of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bot.channels.dispatch import DEFAULT_LIMIT, KeyedDispatcher
from bot.channels.render import numbered_text
from bot.channels.wx_lag import LoopLag
from bot.delivery.base import ChannelSender, SendRequest
from bot.delivery.fastpath import deliver_now
from bot.delivery.outcome import RetryPolicy, apply_result
from bot.delivery.ratelimit import TokenBucket
from dialogs.engine import catalog
from dialogs.engine.runner import Runner
from dialogs.engine.types import Inbound, Outgoing
from storage.models import OutboxMessage

log = logging.getLogger("warmline.wechat.pump")

SUCCESS = b"success"  # what WeChat expects when there is nothing to say right now
Prepare = Callable[[Inbound], Awaitable[Inbound]]
TICKET_SECONDS = 120.0  # WeChat's three tries of a message come within ~15 s
WRITE_GRACE = 2.0  # how long a lane waits for a claimed passive answer to be written
PLATFORM_SLACK = 0.5  # budget + this after the platform's timestamp, at the latest
PLATFORM_TRUST = 2.0  # a timestamp older than this is read as clock skew, not delay
LAG_FACTOR = 4.0  # turns of a late loop: two before the connection is seen, two to write the answer


def combined_text(outgoing: Sequence[Outgoing]) -> str:
    """All of a step's replies as one text, options numbered: one step, one message."""
    return "\n\n".join(numbered_text(o.payload) for o in outgoing
                       if o.payload.get("text") or o.payload.get("options"))


async def passes(gate: asyncio.Future[bool], deadline: float) -> bool:
    """False only when the replay check has refused by the deadline (it goes on after that)."""
    if not gate.done():
        await asyncio.wait({gate}, timeout=max(0.0, deadline - time.monotonic()))
    return not gate.done() or bool(gate.result())


async def hung_up(request: Request) -> None:
    """Returns when the platform closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        continue


@dataclass
class Ticket:
    """One platform message and what became of its step's replies."""

    key: str
    created: float = field(default_factory=time.monotonic)
    outgoing: list[Outgoing] = field(default_factory=list)
    text: str = ""  # the passive answer, once the step is done and its replies fit one
    claimed: str | None = None  # passive | api | empty | refused
    waiters: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    written: asyncio.Event = field(default_factory=asyncio.Event)

    def claim(self, how: str) -> None:
        self.claimed = how
        self.settled.set()


@dataclass
class Answer:
    """What one try of a message is answered: 403, `success`, or a passive text."""

    text: str | None = None
    refused: bool = False
    ticket: Ticket | None = None
    deadline: float = 0.0
    first: bool = True  # False for a platform retry answered with the stored text
    pump: ReplyPump | None = None

    def response(self, body: str, media_type: str = "application/xml") -> Response:
        return TimedReply(body, media_type, self)


class TimedReply(Response):
    """A passive answer that is written only while the deadline holds and the platform listens."""

    def __init__(self, body: str, media_type: str, answer: Answer) -> None:
        super().__init__(body, media_type=media_type)
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer, ticket = self.answer, self.answer.ticket
        in_time = (time.monotonic() < answer.deadline
                   and not await Request(scope, receive).is_disconnected()
                   and (ticket is None or ticket.claimed == "passive"))
        if not in_time:
            await Response(SUCCESS, media_type="text/plain")(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)
        if ticket is None or not answer.first or answer.pump is None:
            return
        if in_time:
            answer.pump.record_sent(ticket)
        elif ticket.claimed == "passive":
            ticket.claim("api")  # too late for the answer: the lane sends it through the API
        ticket.written.set()


class SentRecorder:
    """Records passive replies as sent, many requests' rows in one transaction."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._ids: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, ids: Sequence[int]) -> None:
        self._ids.extend(i for i in ids if i)
        if self._ids and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0.01)  # gather the answers written in the same moment
        while self._ids:
            ids, self._ids = self._ids, []
            try:
                await self.runner.mark_sent(ids)
            except Exception as exc:  # rows stay claimed; the worker re-sends them (at-least-once)
                log.error("recording passive replies failed error=%s", type(exc).__name__)

    async def drain(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=10)


class ReplyPump:
    """Runs each message's step in its user's lane and answers every try in time."""

    def __init__(self, runner: Runner, sender: ChannelSender, budget: float, max_passive_bytes: int,
                 now: Callable[[], datetime], policy: RetryPolicy | None = None, *,
                 concurrency: int = DEFAULT_LIMIT, max_queued: int = 5000, name: str = "wechat",
                 api_per_second: float = 100.0) -> None:
        self.runner = runner
        self.sender = sender
        self.budget = budget
        self.max_passive_bytes = max_passive_bytes
        self.now = now
        self.policy = policy
        self.steps = KeyedDispatcher(concurrency, name=f"{name}-steps")
        self.sends = KeyedDispatcher(concurrency, name=f"{name}-sends")
        self.max_queued = max_queued
        self.step_seconds = 0.02  # moving average of a step's time in its slot
        self.latency = 0.0  # moving average of a step's time from submission to done
        self.lag = LoopLag()
        self.api_rate = TokenBucket(api_per_second)
        self.recorder = SentRecorder(runner)
        self._tickets: OrderedDict[str, Ticket] = OrderedDict()
        self._settling: dict[str, asyncio.Task[None]] = {}  # per user: the latest step's settling
        self._settlers: set[asyncio.Task[None]] = set()

    def expected_wait(self) -> float:
        """Seconds until a step submitted now would likely be done: the queue ahead at the recent
        step time, or what recent steps really took from submission (the process may be short of
        CPU, or waiting on the database), whichever is longer."""
        return max((self.steps.pending / self.steps.limit + 1.0) * self.step_seconds, self.latency)

    def deadline(self, arrived: float, timestamp: str | None = None,
                 wall: Callable[[], float] = time.time) -> float:
        """The moment (monotonic) by which a passive answer must be written.

        `arrived` is when the request's head was in; the platform signed the request at
        `timestamp` (whole seconds of its clock) and hangs up five seconds after sending it, so
        the answer is also due half a second before `timestamp` + 5 — time a busy process spent
        before the route began counts too. Timestamps more than 2 s old are taken for clocks that
        differ (the freshness check allows 300 s), and only the arrival counts. The loop's recent
        lateness comes off, LAG_FACTOR times (at most half the budget): the turns the request
        waited unseen, and the turns the answer will wait to be written.
        """
        self.lag.start()
        due = arrived + self.budget
        if timestamp and timestamp.isdigit():
            lag = wall() - int(timestamp)
            if 0 <= lag <= PLATFORM_TRUST:  # further apart, the clocks differ: arrival decides
                due = min(due, time.monotonic() + self.budget + PLATFORM_SLACK - lag)
        return due - min(LAG_FACTOR * self.lag.now(), self.budget / 2)

    async def answer(self, inbound: Inbound, deadline: float, prepare: Prepare | None = None,
                     gate: asyncio.Future[bool] | None = None, request: Request | None = None) -> Answer:
        """How to answer this try of `inbound`; its step runs (once per message) in the user's lane.

        `gate` is the replay check, still running: a refusal known in time is answered 403, one
        known later only drops the step. `prepare` may enrich the Inbound (a WeCom mobile lookup).
        `request`, when given, is watched: a try whose connection the platform closed stops waiting.
        """
        key = f"{inbound.channel}:{inbound.message_id}" if inbound.message_id else ""
        ticket = self._tickets.get(key) if key else None
        if ticket is not None:  # a platform retry of a message we have seen (signed afresh)
            return await self._wait(ticket, deadline, request, first=False, gate=gate)
        ticket = Ticket(key)
        if key:
            self._remember(ticket)
        if self.steps.pending >= self.max_queued:
            log.warning("wechat queue full: message not taken channel=%s", inbound.channel)
            self._tickets.pop(key, None)
            if gate is not None and not await passes(gate, deadline):
                return Answer(refused=True)
            return Answer(catalog.t("engine.slow_down"), deadline=deadline)  # nothing saved: they are asked to resend
        submitted = time.monotonic()
        self.steps.submit(inbound.address, lambda: self._run(ticket, inbound, prepare, gate, submitted))
        if self.expected_wait() > deadline - time.monotonic():
            return Answer()  # saturated: acknowledge now, the reply follows through the API
        return await self._wait(ticket, deadline, request, first=True)

    async def _wait(self, ticket: Ticket, deadline: float, request: Request | None, *, first: bool,
                    gate: asyncio.Future[bool] | None = None) -> Answer:
        """Wait (as one of the ticket's tries) for the step, until the deadline or a hang-up.

        A retry's own replay check (`gate`) runs meanwhile; it refuses if it answers by the deadline.
        """
        if ticket.claimed is None and not ticket.done.is_set():
            ticket.waiters += 1
            done = asyncio.ensure_future(ticket.done.wait())
            gone = asyncio.ensure_future(hung_up(request)) if request is not None else None
            try:
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    watched = {done} if gone is None else {done, gone}
                    await asyncio.wait(watched, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ticket.waiters -= 1
                done.cancel()
                if gone is not None:
                    gone.cancel()
            if gone is not None and gone.done() and not gone.cancelled():
                return Answer()  # the platform hung up: whoever is left (a retry, the lane) answers
        if ticket.claimed == "refused" or (gate is not None and not await passes(gate, deadline)):
            return Answer(refused=True)
        if not ticket.done.is_set():
            return Answer()  # the lane sends through the API when the step is done
        if ticket.claimed is None:
            if time.monotonic() < deadline:
                ticket.claim("passive")
                return Answer(ticket.text, ticket=ticket, deadline=deadline, first=True, pump=self)
            ticket.claim("api")
            return Answer()
        if ticket.claimed == "passive":
            return Answer(ticket.text, ticket=ticket, deadline=deadline, first=False, pump=self)
        return Answer()

    async def _run(self, ticket: Ticket, inbound: Inbound, prepare: Prepare | None,
                   gate: asyncio.Future[bool] | None, submitted: float) -> None:
        """The lane's job: the replay verdict, then the step; settling its replies follows in order."""
        started = time.monotonic()
        if gate is not None and not await gate:
            log.warning("wechat post refused: replayed signature")
            ticket.claim("refused")
            ticket.done.set()
            return
        if prepare is not None:
            try:
                inbound = await prepare(inbound)
            except Exception as exc:  # enrichment is optional; the message itself goes through
                log.warning("inbound preparation failed error=%s", type(exc).__name__)
        try:
            outgoing = await self.runner.handle(inbound)
        finally:
            done = time.monotonic()
            self.step_seconds = 0.9 * self.step_seconds + 0.1 * (done - started)
            self.latency = 0.9 * self.latency + 0.1 * (done - submitted)
        ticket.outgoing = outgoing
        ticket.text = combined_text(outgoing)
        if not outgoing:
            ticket.claim("empty")
        elif (any(o.payload.get("attachment") for o in outgoing) or not ticket.text
              or len(ticket.text.encode()) > self.max_passive_bytes):
            ticket.claim("api")  # a picture, a file or a long text cannot go in the HTTP answer
        elif ticket.waiters == 0:
            ticket.claim("api")
        ticket.done.set()
        if outgoing:
            address = inbound.address
            task = asyncio.get_running_loop().create_task(
                self._settle(ticket, address, self._settling.get(address)), name=f"settle:{address}")
            self._settling[address] = task
            self._settlers.add(task)
            task.add_done_callback(lambda t, a=address: self._settled(a, t))

    def _settled(self, address: str, task: asyncio.Task[None]) -> None:
        self._settlers.discard(task)
        if self._settling.get(address) is task:
            del self._settling[address]
        if not task.cancelled() and task.exception() is not None:
            log.error("settling a reply failed error=%s", type(task.exception()).__name__)

    async def _settle(self, ticket: Ticket, address: str, previous: asyncio.Task[None] | None) -> None:
        """After the step: wait for a waiting try to take the replies, else send them by the API.

        Waiting holds no slot (most replies are taken passively, and a slot held meanwhile kept
        API replies queued for tens of seconds); the user's earlier replies are handed on first,
        so their API messages keep the user's order in the send lane."""
        await self._decided(ticket)
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        if ticket.claimed == "api":
            self.sends.submit(address, lambda: self._deliver(ticket.outgoing))

    async def _decided(self, ticket: Ticket) -> None:
        """Until the replies are claimed and, when passive, written (or found too late)."""
        if ticket.claimed is None:  # a try is waking up to take it: let it decide
            try:
                await asyncio.wait_for(ticket.settled.wait(), self.budget + WRITE_GRACE)
            except TimeoutError:
                ticket.claim("api")
        if ticket.claimed == "passive":
            try:
                await asyncio.wait_for(ticket.written.wait(), self.budget + WRITE_GRACE)
            except TimeoutError:  # the answer was never written (request cancelled)
                if ticket.claimed == "passive":
                    ticket.claim("api")

    def record_sent(self, ticket: Ticket) -> None:
        self.recorder.add([o.outbox_id for o in ticket.outgoing])

    async def _deliver(self, outgoing: list[Outgoing]) -> None:
        """Through the platform's API; a step's replies as one message (attachments after it)."""
        await self.api_rate.acquire()
        if len(outgoing) == 1 or any(o.payload.get("attachment") for o in outgoing):
            await deliver_now(self.runner.db, self.sender, outgoing, self.now, self.policy)
            return
        first = outgoing[0]
        result = await self.sender.send(SendRequest(first.outbox_id, first.channel, first.address, "reply",
                                                    {"text": combined_text(outgoing), "options": []}))
        async with self.runner.db.async_session() as session:
            for message in outgoing:
                row = await session.get(OutboxMessage, message.outbox_id)
                if row is not None:
                    await apply_result(session, row, result, self.now(), self.policy)

    def _remember(self, ticket: Ticket) -> None:
        self._tickets[ticket.key] = ticket
        cutoff = time.monotonic() - TICKET_SECONDS
        while self._tickets:
            oldest = next(iter(self._tickets.values()))
            if oldest.created >= cutoff:
                break
            self._tickets.popitem(last=False)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for steps still queued and replies still being delivered (shutdown, tests)."""
        try:
            await asyncio.wait_for(self.steps.wait_idle(), timeout)
        except TimeoutError:
            log.warning("%s still busy after %.0f s", self.steps.name, timeout)
        if self._settlers:  # steps hand their replies on to the send lane
            await asyncio.wait(set(self._settlers), timeout=timeout)
        try:
            await asyncio.wait_for(self.sends.wait_idle(), timeout)
        except TimeoutError:
            log.warning("%s still busy after %.0f s", self.sends.name, timeout)
        await self.recorder.drain()
        if self.lag.worst:
            log.info("%s: worst event-loop lateness %.2f s", self.steps.name, self.lag.worst)
        await self.lag.stop()
