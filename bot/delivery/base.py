"""The contract between the delivery worker and each channel's sender.

A sender turns one outbox payload into one platform call and says what happened in terms the
worker understands (sent, retry later, permanent failure, person unreachable). It never
touches the database: status, retries and surfacing failures are the worker's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from storage.models import OutboxLane
from storage.outbox import Claim, lane_of


@dataclass(frozen=True)
class SendRequest:
    outbox_id: int
    channel: str
    address: str
    kind: str
    payload: dict[str, Any]
    person_id: int | None = None
    attempts: int = 0
    priority: int | None = None  # the outbox lane; None: the lane of `kind`

    @property
    def lane(self) -> int:
        return lane_of(self.kind) if self.priority is None else self.priority

    @property
    def bulk(self) -> bool:
        """A sender may hold bulk back after a 429, never a reply or an alert."""
        return self.lane >= OutboxLane.BULK


def request_of(claim: Claim) -> SendRequest:
    """What a sender needs of a claimed outbox row."""
    return SendRequest(claim.id, claim.channel, claim.address, claim.kind, claim.payload,
                       person_id=claim.person_id, attempts=claim.attempts, priority=claim.priority)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    platform_message_id: str | None = None
    retry_after: float | None = None  # seconds the platform asked us to wait (429, quota)
    permanent: bool = False  # do not retry this message
    unreachable: bool = False  # the person blocked us / unsubscribed: stop messaging them
    error: str | None = None  # short, no personal data
    attempted: bool = True  # False: held back before reaching the platform (not an attempt)

    @classmethod
    def sent(cls, platform_message_id: str | None = None) -> SendResult:
        return cls(ok=True, platform_message_id=platform_message_id)

    @classmethod
    def retry(cls, error: str, retry_after: float | None = None) -> SendResult:
        return cls(ok=False, retry_after=retry_after, error=error)

    @classmethod
    def held(cls, error: str, retry_after: float) -> SendResult:
        """Not sent, by the sender's own choice (a flood wait still running): try again later,
        without counting an attempt."""
        return cls(ok=False, retry_after=retry_after, error=error, attempted=False)

    @classmethod
    def failed(cls, error: str, *, unreachable: bool = False) -> SendResult:
        return cls(ok=False, permanent=True, unreachable=unreachable, error=error)


@dataclass(frozen=True)
class RateLimit:
    """A platform's sending limits: messages per second overall, and seconds between messages
    to one recipient."""

    per_second: float = 30.0
    per_recipient_interval: float = 1.0


class ChannelSender(Protocol):
    channel: str
    limits: RateLimit

    async def send(self, request: SendRequest) -> SendResult: ...
