"""Admission control for the WeChat webhooks: steps queued per user, in order, a few at a time.

Each user has a lane (a queue of their steps, run one after another, in arrival order); lanes
share a bounded number of step slots, handed out first come, first served. The queue ahead of a
new message gives an estimate of how long it will wait, from a moving average of recent step
times: when the estimate does not fit in the request's reply budget the webhook acknowledges at
once (`success`) and the reply follows through the platform's API, instead of every request
slowing past WeChat's five seconds together. The number of steps allowed to wait is bounded too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from contextvars import ContextVar

log = logging.getLogger("warmline.wechat.lanes")

Job = Callable[[], Awaitable[None]]
_queued: ContextVar[bool] = ContextVar("queued", default=False)  # the lane's current job still waits


class Lanes:
    """Per-key ordered queues sharing `concurrency` slots; at most `max_waiting` jobs waiting."""

    def __init__(self, concurrency: int, max_waiting: int, initial_step_seconds: float = 0.02) -> None:
        self.concurrency = max(1, concurrency)
        self.max_waiting = max(1, max_waiting)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._lanes: dict[Hashable, deque[Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.waiting = 0  # submitted, and neither through its slot nor finished
        self.step_seconds = initial_step_seconds  # moving average of a slot's holding time

    def expected_wait(self) -> float:
        """Seconds a step submitted now would likely take until done, queue included."""
        return (self.waiting / self.concurrency + 1.0) * self.step_seconds

    def submit(self, key: Hashable, job: Job) -> bool:
        """Queue `job` behind the key's earlier jobs; False (nothing queued) when the queue is full."""
        if self.waiting >= self.max_waiting:
            return False
        self.waiting += 1
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(job)
            return True
        self._lanes[key] = deque([job])
        task = asyncio.ensure_future(self._drain(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _drain(self, key: Hashable) -> None:
        lane = self._lanes[key]
        try:
            while lane:
                job = lane.popleft()
                _queued.set(True)
                try:
                    await job()
                except Exception as exc:  # one user's failed step must not stop their lane
                    log.error("queued step failed error=%s", type(exc).__name__)
                finally:
                    if _queued.get():  # it never took a slot (refused, or failed before)
                        self.waiting -= 1
                        _queued.set(False)
        finally:
            del self._lanes[key]

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the shared slots (a job calls this around its database work)."""
        await self._slots.acquire()
        started = time.monotonic()
        try:
            yield
        finally:
            self._slots.release()
            if _queued.get():  # the step is done; its API delivery is not queueing work
                self.waiting -= 1
                _queued.set(False)
            self.step_seconds = 0.9 * self.step_seconds + 0.1 * (time.monotonic() - started)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
