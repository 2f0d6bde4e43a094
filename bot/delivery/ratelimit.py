"""Sending no faster than a platform allows: a token bucket per channel, spacing per recipient.

Platforms throttle a bot that bursts (Telegram: about 30 messages a second overall and one a
second to one chat; WeChat: per-account quotas). Waiting here is cheaper than a 429 and keeps
a broadcast from being flood-limited halfway. Bulk sends (broadcasts, digests, greetings) may
use the channel's whole rate but never its last `reply_reserve` tokens, so a reply always finds
room at once; and when the platform says
"retry after N seconds" it is bulk that stops for N seconds: the chat that was refused waits
in the outbox (its row is due again after exactly N seconds), other people's replies go on.
Times are monotonic seconds of the running loop, never the (possibly fixed) program clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bot.delivery.base import RateLimit

Monotonic = Callable[[], float]
SHORT_WAIT = 0.25  # seconds of a person's spacing a sender simply waits out in its send slot
LONGEST_SPACING = 5.0  # a longer per-recipient interval (SMS: one a minute) is the sender's own
# quota, counted in the outbox by the sender itself, not waited out here


class TokenBucket:
    """`rate` tokens a second, up to `burst` saved; `acquire()` waits for one."""

    def __init__(self, rate: float, burst: float | None = None, *, now: Monotonic = time.monotonic) -> None:
        self.rate = max(rate, 0.001)
        self.burst = max(burst if burst is not None else max(1.0, rate), 1.0)
        self._now = now
        self._tokens = self.burst
        self._stamp = now()

    def _refill(self) -> None:
        at = self._now()
        self._tokens = min(self.burst, self._tokens + (at - self._stamp) * self.rate)
        self._stamp = at

    async def acquire(self, *, reserve: float = 0.0) -> None:
        """Take a token; with `reserve`, only while that many stay behind (what bulk leaves for
        replies: in a steady stream bulk still gets the whole rate, the reserve just stays full)."""
        reserve = max(0.0, min(reserve, self.burst - 1))
        while True:
            self._refill()
            if self._tokens >= 1 + reserve:
                self._tokens -= 1
                return
            await asyncio.sleep((1 + reserve - self._tokens) / self.rate)


class ChannelLimiter:
    """One channel's limits: the overall bucket, bulk's share of it, per-recipient spacing and
    a pause of bulk sends after the platform pushed back."""

    def __init__(self, limits: RateLimit, *, now: Monotonic = time.monotonic,
                 reply_reserve: float = 3.0) -> None:
        self.limits = limits
        self._now = now
        self.bucket = TokenBucket(limits.per_second, now=now)
        self.reply_reserve = reply_reserve
        self._last: dict[str, float] = {}
        self.paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """The platform asked us to wait: no bulk send goes to this channel until then."""
        self.paused_until = max(self.paused_until, self._now() + max(0.0, seconds))

    def pause_left(self) -> float:
        return max(0.0, self.paused_until - self._now())

    def recipient_wait(self, address: str) -> float:
        if self.limits.per_recipient_interval > LONGEST_SPACING:
            return 0.0
        last = self._last.get(address)
        if last is None:
            return 0.0
        return max(0.0, last + self.limits.per_recipient_interval - self._now())

    def spacing(self, longer_than: float = SHORT_WAIT) -> list[str]:
        """Addresses with more than `longer_than` seconds of their per-recipient interval left
        (a claim skips them, so a worker never holds a send slot to wait out one person's
        spacing; a shorter wait is simply waited)."""
        return [a for a in self._last if self.recipient_wait(a) > longer_than]

    def next_free(self) -> float:
        """Seconds until the first spaced address may be sent to again (inf if none is spaced)."""
        now = self._now()
        ends = [t + self.limits.per_recipient_interval - now for t in self._last.values()]
        return min((e for e in ends if e > 0), default=float("inf"))

    def sent(self, address: str) -> None:
        """The platform has answered a send to `address`: its spacing counts from now, so the
        next message arrives at least the interval after this one did, however slow the send."""
        self._last[address] = self._now()

    async def acquire(self, address: str, *, bulk: bool = True) -> None:
        """Wait until a message to `address` may go out, then count it as sent now."""
        while True:
            wait = max(self.pause_left() if bulk else 0.0, self.recipient_wait(address))
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        await self.bucket.acquire(reserve=self.reply_reserve if bulk else 0.0)
        self._last[address] = self._now()
        if len(self._last) > 10_000:  # forget recipients whose spacing has long passed
            horizon = self._now() - self.limits.per_recipient_interval
            self._last = {a: t for a, t in self._last.items() if t > horizon}


class RateLimiter:
    """The limiters of every channel this process sends on."""

    def __init__(self, *, now: Monotonic = time.monotonic, reply_reserve: float = 3.0) -> None:
        self._now = now
        self.reply_reserve = reply_reserve
        self._channels: dict[str, ChannelLimiter] = {}

    def channel(self, name: str, limits: RateLimit) -> ChannelLimiter:
        limiter = self._channels.get(name)
        if limiter is None:
            limiter = self._channels[name] = ChannelLimiter(limits, now=self._now,
                                                            reply_reserve=self.reply_reserve)
        return limiter
