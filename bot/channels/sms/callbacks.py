"""What the provider posts back: delivery receipts (状态报告) and replies (上行短信).

Receipts make the outbox tell the truth: a message the provider accepted but the phone never
got is failed, a greeting it carried no longer counts as a contact, and the contact volunteer
is asked to call. Several failed receipts in a row mean the number is dead: it is marked
unreachable, which stops SMS to it and tells the volunteer.

Replies are handled like any chat message, by the same runner and the same rules: 退订 / TD /
STOP withdraws at once, anything else is kept and forwarded to the contact volunteer. An SMS
can only carry an approved template, so the runner's answer goes out as the `stopped` or
`received` template when one is configured, and is otherwise recorded as not sent.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.channels.sms.provider import Receipt, UpMessage
from bot.delivery.fastpath import deliver_now
from bot.delivery.outcome import mark_unreachable
from dialogs.engine import catalog
from dialogs.engine.types import Inbound, Outgoing
from domain.call_tasks import ask_volunteer_to_call
from domain.outreach import membership, volunteer_of
from storage import outbox
from storage.models import (
    ChannelAddress,
    FamilyMessage,
    Greeting,
    OutboxMessage,
    OutboxStatus,
    Preference,
    Visit,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.app import App
    from bot.channels.sms.sender import SmsSender

log = logging.getLogger("warmline.sms.callbacks")

CHANNEL = "sms"
DEAD_AFTER_FAILED_RECEIPTS = 3


def mainland_number(raw: str) -> str:
    """11 digits from what a provider writes (+86 138…, 0086…, 86138…)."""
    digits = "".join(ch for ch in raw if ch.isdigit() or ch == "*")
    for prefix in ("0086", "86"):
        if len(digits) == 11 + len(prefix) and digits.startswith(prefix):
            return digits[len(prefix):]
    return digits


def same_number(reported: str, address: str) -> bool:
    """Providers may mask the middle digits (138****1111) in examples; compare what is shown."""
    reported = mainland_number(reported)
    if len(reported) != len(address):
        return False
    return all(a == b or a == "*" for a, b in zip(reported, address, strict=True))


async def apply_receipts(app: App, receipts: list[Receipt]) -> int:
    """Record each receipt on its outbox row; returns how many matched a row of ours."""
    matched = 0
    now = app.services.now()
    async with app.db.async_session() as session:
        for receipt in receipts:
            row = await _row_of(session, receipt)
            if row is None or not same_number(receipt.phone, row.address):
                log.warning("sms receipt for no message of ours was ignored")
                continue
            matched += 1
            if not outbox.record_receipt(row, delivered=receipt.delivered, code=receipt.code):
                continue  # delivered, or a receipt pushed again
            await _undo_greeting(session, row)
            if await _number_is_dead(session, row.address):
                await mark_unreachable(session, row, now)
            elif row.person_id is not None:
                text = str((row.payload or {}).get("text") or "").strip()
                await ask_volunteer_to_call(session, row.person_id, catalog.t(
                    "sms.receipt_failed", code=receipt.code, excerpt=text.splitlines()[0][:60] if text else ""),
                    now)
    return matched


async def _row_of(session: AsyncSession, receipt: Receipt) -> OutboxMessage | None:
    if receipt.out_id and receipt.out_id.isdigit():
        row = await session.get(OutboxMessage, int(receipt.out_id))
        if row is not None and row.channel == CHANNEL:
            return row
    if receipt.message_id:
        return await session.scalar(select(OutboxMessage).where(
            OutboxMessage.channel == CHANNEL, OutboxMessage.platform_message_id == receipt.message_id))
    return None


async def _undo_greeting(session: AsyncSession, row: OutboxMessage) -> None:
    """A greeting that never arrived is not a contact: the plan's figures must not count it."""
    greeting = await session.scalar(select(Greeting).where(Greeting.outbox_id == row.id))
    if greeting is None:
        return
    if greeting.visit_id is not None:
        visit = await session.get(Visit, greeting.visit_id)
        greeting.visit_id = None
        if visit is not None:
            await session.delete(visit)
    greeting.status = OutboxStatus.FAILED


async def _number_is_dead(session: AsyncSession, phone: str) -> bool:
    recent = list(await session.scalars(
        select(OutboxMessage.status).where(OutboxMessage.channel == CHANNEL, OutboxMessage.address == phone,
                                           OutboxMessage.status.in_((OutboxStatus.SENT, OutboxStatus.FAILED)),
                                           OutboxMessage.sent_at.is_not(None))
        .order_by(OutboxMessage.sent_at.desc(), OutboxMessage.id.desc()).limit(DEAD_AFTER_FAILED_RECEIPTS)))
    return len(recent) == DEAD_AFTER_FAILED_RECEIPTS and all(s == OutboxStatus.FAILED for s in recent)


async def handle_replies(app: App, sender: SmsSender, messages: list[UpMessage]) -> int:
    """Feed each reply from a known SMS family member to the runner; returns how many."""
    handled = 0
    for message in messages:
        phone = mainland_number(message.phone)
        async with app.db.async_session() as session:
            known = await session.scalar(select(ChannelAddress.person_id).where(
                ChannelAddress.channel == CHANNEL, ChannelAddress.address == phone))
        if known is None:
            log.info("sms reply from a number that is not a registered SMS family was ignored")
            continue
        started = app.services.now()
        outgoing = await app.runner.handle(Inbound(CHANNEL, phone, text=message.text[:2000],
                                                   message_id=f"sms:{message.ref}"[:64]))
        handled += 1
        if outgoing:
            # one SMS answers one step: the template says it all; further texts are not sent
            hint, volunteer = await _answer_template(app, known, started)
            answers = [_with(o, hint if i == 0 else None, volunteer) for i, o in enumerate(outgoing)]
            await deliver_now(app.db, sender, answers, app.services.now)
    return handled


def _with(outgoing: Outgoing, hint: str | None, volunteer: str) -> Outgoing:
    payload = dict(outgoing.payload)
    payload["sms_template"] = hint or "reply"
    payload["volunteer"] = volunteer
    return replace(outgoing, payload=payload)


async def _answer_template(app: App, person_id: int, since: datetime) -> tuple[str | None, str]:
    """Which template answers this step: `stopped` after 退订, `received` after kept words."""
    async with app.db.async_session() as session:
        preference = await session.get(Preference, person_id)
        found = await membership(session, person_id)
        volunteer = await volunteer_of(session, found[1].id if found else None)
        name = volunteer.name if volunteer is not None else "县计生协"
        if preference is not None and preference.stopped_at is not None and preference.stopped_at >= since:
            return "stopped", name
        kept = await session.scalar(select(FamilyMessage.id).where(
            FamilyMessage.person_id == person_id, FamilyMessage.received_at >= since).limit(1))
        return ("received" if kept is not None else None), name
