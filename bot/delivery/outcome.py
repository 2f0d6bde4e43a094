"""What a send attempt means for its outbox row — the one place retry and failure rules live.

Used by the fast path (replies sent right after commit) and by the delivery worker alike, so a
reply that failed on the fast path is retried by the worker under the same rules.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.delivery.base import SendResult
from dialogs.engine.types import Reply
from domain.alerts import alert_recipients
from domain.messages import queue_message
from storage.models import (
    ChannelAddress,
    HouseholdMember,
    OutboxMessage,
    OutboxStatus,
    Person,
    Role,
)
from storage.queries import contact_volunteer


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 2.0  # seconds; doubles each attempt
    max_delay: float = 900.0
    jitter: float = 0.25  # ± share of the delay, so retries of a burst spread out

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """[delivery] max_attempts, base_delay_seconds, max_delay_seconds, jitter."""
        d, base = settings.section("delivery"), cls()
        return cls(
            max_attempts=int(d.get("max_attempts", base.max_attempts)),
            base_delay=float(d.get("base_delay_seconds", base.base_delay)),
            max_delay=float(d.get("max_delay_seconds", base.max_delay)),
            jitter=float(d.get("jitter", base.jitter)),
        )

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay, self.base_delay * (2 ** max(0, attempts - 1)))
        backoff *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(backoff, retry_after or 0.0)


async def apply_result(session: AsyncSession, row: OutboxMessage, result: SendResult,
                       now: datetime, policy: RetryPolicy | None = None) -> None:
    policy = policy or RetryPolicy()
    row.attempts += 1
    row.claimed_by = None
    row.claimed_at = None
    if result.ok:
        row.status = OutboxStatus.SENT
        row.sent_at = now
        row.platform_message_id = result.platform_message_id
        row.last_error = None
        return
    row.last_error = (result.error or "error")[:500]
    if result.permanent:
        row.status = OutboxStatus.FAILED
        if result.unreachable:
            await mark_unreachable(session, row, now)
        return
    if row.attempts >= policy.max_attempts:
        row.status = OutboxStatus.FAILED
        row.last_error = f"gave up after {row.attempts} attempts: {row.last_error}"[:500]
        return
    next_at = now + timedelta(seconds=policy.delay(row.attempts, result.retry_after))
    if row.expires_at is not None and next_at >= row.expires_at:
        row.status = OutboxStatus.EXPIRED
        return
    row.status = OutboxStatus.QUEUED
    row.next_attempt_at = next_at


async def mark_unreachable(session: AsyncSession, row: OutboxMessage, now: datetime) -> None:
    """The person blocked us or left: stop using that address and tell someone who can call."""
    address = await session.scalar(select(ChannelAddress).where(
        ChannelAddress.channel == row.channel, ChannelAddress.address == row.address))
    if address is not None and address.blocked_at is None:
        address.blocked_at = now
    if row.person_id is None:
        return
    person = await session.get(Person, row.person_id)
    if person is None:
        return
    first_time = person.unreachable_at is None
    person.unreachable_at = person.unreachable_at or now
    person.unreachable_reason = f"{row.channel}: {row.last_error}"[:200]
    if not first_time:
        return
    for helper in await who_should_call(session, person):
        await queue_message(
            session, person_id=helper.id, kind="alert", now=now,
            key=f"unreachable:{person.id}:{row.channel}:{helper.id}",
            reply=Reply(f"【联系不上】{person.name} 已无法通过{_channel_name(row.channel)}收到消息"
                        f"（可能已屏蔽或取消关注）。请电话联系，必要时上门看看。"),
        )


async def who_should_call(session: AsyncSession, person: Person) -> list[Person]:
    """A family member's contact volunteer; a volunteer's coordinators; otherwise the admins."""
    if person.role == Role.FAMILY:
        household_id = await session.scalar(
            select(HouseholdMember.household_id).where(HouseholdMember.person_id == person.id))
        if household_id is not None:
            volunteer = await contact_volunteer(session, household_id)
            if volunteer is not None and volunteer.id != person.id:
                return [volunteer]
    if person.township_id is not None:
        return [p for p in await alert_recipients(session, person.township_id) if p.id != person.id]
    return list(await session.scalars(select(Person).where(
        Person.role == Role.ADMIN, Person.active.is_(True), Person.id != person.id)))


def _channel_name(channel: str) -> str:
    return {"telegram": " Telegram ", "wechat": "微信公众号", "wecom": "企业微信"}.get(channel, channel)
