"""Chats in parallel, each chat in order: the dispatcher every channel puts its inbound through.

Why it exists: one chat's messages must be handled strictly in the order they arrived (an
answer belongs to the question before it, and a double tap must not overtake the first tap),
yet a slow step in one chat (a chart, a busy database, a slow platform send) must not hold up
every other chat. A per-process lock around everything gives the first and loses the second;
an unbounded `create_task` per update gives the second and loses the first (and the database).

`KeyedDispatcher` gives both: jobs with the same key run one after another in submission order,
jobs with different keys run side by side, and at most `limit` jobs run at once (the rest wait
their turn, first come first served). Keys are opaque strings; channels use the chat address
("telegram" chat id, WeChat OpenID, WeCom UserID), so the key is the same one the runner uses
for the dialog session.

How a channel uses it (Telegram, WeChat and WeCom do it this way):

    self._dispatch = KeyedDispatcher(max_concurrent_steps(app.settings), name="wechat")

    # A webhook that must answer only once the step is committed:
    await self._dispatch.run(address, lambda: self._handle(inbound))

    # A poller that hands over and moves on; the future says when the step is done
    # (Telegram's getUpdates loop confirms an update only after its future resolved):
    done = self._dispatch.submit(address, lambda: self._handle(update))
    done.add_done_callback(...)

    # On stop: let running steps finish for a moment, drop what has not started.
    await self._dispatch.close(grace=5)

A job is a zero-argument callable returning an awaitable, so nothing of it starts before its
turn. An exception in a job is logged (its type only: messages carry personal data) and set
on its future; it never stops the jobs queued behind it. `submit` is synchronous and never
blocks: back-pressure is the caller's (a poller asks for no more updates while `pending` is
high; a webhook server has its own connection limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from storage.db import DEFAULT_STEPS

log = logging.getLogger("warmline.dispatch")

T = TypeVar("T")
Job = Callable[[], Awaitable[T]]

DEFAULT_LIMIT = DEFAULT_STEPS  # one place: the database pool is sized by the same number
STOP_GRACE_SECONDS = 5.0  # on stop, how long steps under way may take to commit (the rest come again)
SETTINGS_SECTION = "core"
SETTINGS_KEY = "max_concurrent_steps"


def max_concurrent_steps(settings: Any) -> int:
    """`[core] max_concurrent_steps` (bot/defaults/core.toml), at least 1."""
    try:
        value = int(settings.section(SETTINGS_SECTION).get(SETTINGS_KEY, DEFAULT_LIMIT))
    except (TypeError, ValueError):
        value = DEFAULT_LIMIT
    return max(1, value)


class KeyedDispatcher:
    """Runs jobs concurrently across keys, in submission order within a key, `limit` at once."""

    def __init__(self, limit: int = DEFAULT_LIMIT, *, name: str = "dispatch") -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.name = name
        self._slots = asyncio.Semaphore(limit)
        self._tails: dict[str, asyncio.Task[Any]] = {}  # the last job submitted per key
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = 0
        self._queued = 0  # jobs whose turn in their key has come, waiting for a free slot
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()  # set while no job waits for a slot
        self._room.set()

    # ------------------------------------------------------------------ public

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished (running or waiting)."""
        return len(self._tasks)

    @property
    def running(self) -> int:
        """Jobs running now (at most `limit`)."""
        return self._running

    @property
    def queued(self) -> int:
        """Jobs ready to run but waiting for a free slot (every slot is taken)."""
        return self._queued

    async def wait_for_room(self) -> None:
        """Until no job waits for a slot.

        A poller that fetches more work while jobs queue here only lengthens the queue (and
        Telegram's getUpdates repeats every unconfirmed update in each answer, so polling a
        saturated bot costs it CPU for nothing); it asks again once the queue has drained.
        """
        await self._room.wait()

    def submit(self, key: str, job: Job[T]) -> asyncio.Future[T]:
        """Queue `job` behind the earlier jobs of `key`; returns a future of its result."""
        if self._closed:
            raise RuntimeError(f"{self.name}: dispatcher is closed")
        previous = self._tails.get(key)
        task: asyncio.Task[T] = asyncio.get_running_loop().create_task(
            self._run_after(previous, job), name=f"{self.name}:{key}")
        self._tails[key] = task
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(lambda t, k=key: self._finished(k, t))
        return task

    async def run(self, key: str, job: Job[T]) -> T:
        """Submit and wait for the job's own result (its exception is raised here)."""
        return await asyncio.shield(self.submit(key, job))

    async def wait_idle(self) -> None:
        """Until every submitted job has finished."""
        await self._idle.wait()

    async def close(self, grace: float = 5.0) -> None:
        """Accept no more jobs; give those submitted `grace` seconds, then cancel the rest."""
        self._closed = True
        if not self._tasks:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._idle.wait()), grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---------------------------------------------------------------- internal

    async def _run_after(self, previous: asyncio.Task[Any] | None, job: Job[T]) -> T:
        if previous is not None and not previous.done():
            # the key's earlier job first; its failure or cancellation does not stop this one
            await asyncio.wait([previous])
        if self._slots.locked():
            self._queued += 1
            self._room.clear()
            try:
                await self._slots.acquire()
            finally:
                self._queued -= 1
                if not self._queued:
                    self._room.set()
        else:
            await self._slots.acquire()
        self._running += 1
        try:
            return await job()
        finally:
            self._running -= 1
            self._slots.release()

    def _finished(self, key: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._tails.get(key) is task:
            del self._tails[key]
        if not self._tasks:
            self._idle.set()
        if task.cancelled():
            return
        error = task.exception()  # also marks it retrieved: a fire-and-forget job logs here
        if error is not None:
            log.error("%s: job failed error=%s", self.name, type(error).__name__)
