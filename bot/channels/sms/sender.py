"""Sending outbox rows as template SMS, with the rules every provider shares.

A row goes out only as an approved template (see templates.py), never inside quiet hours (the
worker is told when they end), and never beyond the per-number limits (counted from what the
outbox actually sent to that number, so they hold across restarts and workers). When no
template fits, a greeting or an answer to the family becomes a call task for the contact
volunteer, and the row fails with a reason the outbox shows. Provider verdicts map onto the
worker's results: a number the provider rejects is unreachable (the worker tells the volunteer).
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.channels.sms.provider import SmsProvider, TemplateSms, Verdict
from bot.channels.sms.templates import Template, choose, load_templates, variables
from bot.delivery.base import RateLimit, SendRequest, SendResult
from dialogs.engine import catalog
from domain.call_tasks import ask_volunteer_to_call
from storage.models import OutboxMessage, OutboxStatus

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.sms.send")

CHANNEL = "sms"
# Family messages that must reach the family somehow: without a template, a person calls.
CALL_INSTEAD = frozenset({"greeting", "family_reply"})


def quiet_until(local: datetime, quiet: tuple[time, time]) -> datetime | None:
    """The local instant quiet hours end, when `local` is inside them; else None."""
    start, end = quiet
    now = local.time()
    inside = (start <= now or now < end) if start > end else (start <= now < end)
    if not inside:
        return None
    day = local.date() if now < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, local.tzinfo)


class SmsSender:
    channel = CHANNEL

    def __init__(self, app: App, provider: SmsProvider, sign_name: str) -> None:
        section = app.settings.section("sms")
        self.app = app
        self.provider = provider
        self.sign_name = sign_name
        self.templates: dict[str, Template] = load_templates(section)
        self.max_chars = int(section.get("max_variable_chars", 20))
        self.per_minute = int(section.get("per_number_per_minute", 1))
        self.per_hour = int(section.get("per_number_per_hour", 3))
        self.per_day = int(section.get("per_number_per_day", 5))
        # the worker spaces a burst to one number; the per-number counts above come from the outbox
        self.limits = RateLimit(per_second=float(section.get("per_second", 50)),
                                per_recipient_interval=float(section.get("per_recipient_interval_seconds", 1.0)))

    async def send(self, request: SendRequest) -> SendResult:
        now = self.app.services.now()
        local = self.app.services.local(now)
        ends = quiet_until(local, self.app.services.quiet_hours)
        if ends is not None:
            return SendResult.retry("sms: quiet hours", retry_after=(ends - local).total_seconds())
        template = choose(self.templates, request.kind, request.payload)
        if template is None:
            if request.kind in CALL_INSTEAD and request.person_id is not None:
                await self._call_instead(request, now)
            return SendResult.failed(f"sms: no approved template for {request.kind}")
        wait = await self._frequency_wait(request.address, now)
        if wait is not None:
            return SendResult.retry("sms: per-number limit", retry_after=wait)
        answer = await self.provider.send(TemplateSms(
            phone=request.address, sign_name=self.sign_name, template_code=template.code,
            params=variables(template, request.payload, local, self.max_chars),
            out_id=str(request.outbox_id)))
        error = f"{self.provider.name}: {answer.code}"
        if answer.verdict is Verdict.SENT:
            return SendResult.sent(answer.message_id)
        if answer.verdict is Verdict.RETRY:
            return SendResult.retry(error, retry_after=answer.retry_after)
        if answer.verdict is Verdict.UNREACHABLE:
            return SendResult.failed(error, unreachable=True)
        log.error("sms refused by the provider: code=%s template=%s", answer.code, template.name)
        if request.kind in CALL_INSTEAD and request.person_id is not None:
            await self._call_instead(request, now)
        return SendResult.failed(error)

    async def _frequency_wait(self, phone: str, now: datetime) -> float | None:
        """Seconds until this number may get another message, or None when it may now."""
        local_midnight = self.app.services.local(now).replace(hour=0, minute=0, second=0, microsecond=0)
        windows = ((now - timedelta(minutes=1), self.per_minute, now + timedelta(minutes=1)),
                   (now - timedelta(hours=1), self.per_hour, now + timedelta(hours=1)),
                   (local_midnight, self.per_day, local_midnight + timedelta(days=1)))
        async with self.app.db.async_session() as session:
            for since, limit, _reset in windows:
                sent = list(await session.scalars(
                    select(OutboxMessage.sent_at).where(
                        OutboxMessage.channel == CHANNEL, OutboxMessage.address == phone,
                        OutboxMessage.status == OutboxStatus.SENT, OutboxMessage.sent_at >= since)
                    .order_by(OutboxMessage.sent_at)))
                if len(sent) >= limit:
                    if since == local_midnight:
                        return (local_midnight + timedelta(days=1) - now).total_seconds()
                    oldest = sent[len(sent) - limit]
                    assert oldest is not None
                    return max(1.0, (oldest + (now - since) - now).total_seconds())
        return None

    async def _call_instead(self, request: SendRequest, now: datetime) -> None:
        text = str(request.payload.get("text") or "").strip()
        excerpt = text.splitlines()[0][:60] if text else ""
        async with self.app.db.async_session() as session:
            await ask_volunteer_to_call(session, int(request.person_id or 0),
                                        catalog.t("sms.call_reason", excerpt=excerpt), now)

