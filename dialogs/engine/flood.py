"""Polite flood control: a sender who floods the bot is slowed down, not served at full speed.

A sliding window per (channel, address) held by the runner instance. It is deliberately per
process: it protects the process and the database from one noisy sender; it is not a quota.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FloodGuard:
    max_messages: int = 20
    window_seconds: float = 10.0
    _seen: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _warned: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def from_section(cls, core: dict[str, Any]) -> FloodGuard:
        """From `[core] flood_max_messages` and `flood_window_seconds` (bot/defaults/core.toml)."""
        return cls(max_messages=int(core.get("flood_max_messages", cls.max_messages)),
                   window_seconds=float(core.get("flood_window_seconds", cls.window_seconds)))

    def admit(self, key: tuple[str, str], now: float) -> bool:
        """True when this message may be processed now."""
        times = self._seen.setdefault(key, deque())
        while times and now - times[0] > self.window_seconds:
            times.popleft()
        if len(times) >= self.max_messages:
            return False
        times.append(now)
        if len(self._seen) > 10_000:  # forget quiet senders so memory stays bounded
            for stale in [k for k, v in self._seen.items() if not v or now - v[-1] > self.window_seconds]:
                self._seen.pop(stale, None)
                self._warned.pop(stale, None)
        return True

    def should_warn(self, key: tuple[str, str], now: float) -> bool:
        """Warn once per window, so the warning itself does not become a flood."""
        last = self._warned.get(key)
        if last is not None and now - last < self.window_seconds:
            return False
        self._warned[key] = now
        return True
