"""How late the event loop runs what is due: the margin the five-second promise must keep.

WeChat and WeCom hang up five seconds after *they* sent a request. Between that moment and our
route's first line lie the kernel's accept queue and the event loop getting round to the new
connection; between the moment we decide to answer and the answer leaving lie the loop again
and the socket write. On a saturated process one turn of the loop can take hundreds of
milliseconds, so a deadline that ignores it is met on paper and missed on the platform's clock.

`LoopLag` measures it all the time: a tick every 50 ms notes how late it woke. `now()` is the
worst recent lateness (it decays with a half-life of a few seconds, so one spike counts for a
while and then fades), or how overdue the next tick is already, whichever is more — a loop that
is stuck right now is seen at once by whoever asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

TICK = 0.05
HALF_LIFE = 3.0  # seconds for a spike's weight to halve


class LoopLag:
    """The event loop's recent lateness in seconds, measured by a tick of its own."""

    def __init__(self, tick: float = TICK, half_life: float = HALF_LIFE) -> None:
        self.tick = tick
        self.half_life = half_life
        self.worst = 0.0  # the largest lateness seen since start, for the log
        self._recent = 0.0
        self._noted = time.monotonic()
        self._due = 0.0  # when the running tick should wake (0: not running)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin ticking on the running loop (again after `stop`); idempotent."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._due = 0.0

    def note(self, late: float, at: float | None = None) -> None:
        """Count one measured lateness (the tick does this; tests may too)."""
        at = time.monotonic() if at is None else at
        self._recent = max(late, self._decayed(at))
        self._noted = at
        self.worst = max(self.worst, late)

    def now(self) -> float:
        """Seconds of lateness to allow for at this moment."""
        at = time.monotonic()
        overdue = at - self._due if self._due else 0.0
        return max(self._decayed(at), overdue, 0.0)

    def _decayed(self, at: float) -> float:
        return self._recent * math.pow(0.5, max(0.0, at - self._noted) / self.half_life)

    async def _watch(self) -> None:
        try:
            while True:
                self._due = time.monotonic() + self.tick
                await asyncio.sleep(self.tick)
                self.note(max(0.0, time.monotonic() - self._due))
        finally:
            self._due = 0.0
