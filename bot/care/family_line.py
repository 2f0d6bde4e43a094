"""The line back, from the scheduler's side: notice answers, and escalate what is left unanswered.

A family's message is answered (see dialogs/family_line.py for the whole definition) when the
volunteer replied or said they called in "回复家属留言", or — checked here each tick — when the
call task it made was closed, or a home visit, phone call or WeChat contact was recorded for the
household after the message came in. A message still unanswered `[outreach]
answer_within_hours` after it arrived goes to the township's coordinators (else the county's
admins), once, through the outbox, with a button that opens it for a reply.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine import catalog
from dialogs.engine.types import Option, Reply
from dialogs.family_line import FamilyReply
from dialogs.services import OutreachPolicy
from domain.alerts import alert_recipients
from domain.family_line import CALL_TASK, task_key
from domain.messages import queue_message
from domain.outreach import volunteer_of
from storage.models import (
    FamilyMessage,
    Household,
    Person,
    Role,
    Task,
    Visit,
    VisitKind,
    VisitOutcome,
)
from storage.queries import household_labels

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.family_line")

ANSWERING_KINDS = (VisitKind.HOME, VisitKind.PHONE, VisitKind.WECHAT)
PREVIEW = 300


async def notice_answers(session: AsyncSession, now: datetime, tz: ZoneInfo) -> int:
    """Mark messages answered by a closed call task or a contact after them: recorded after the
    message came in, and for a day no earlier than the day it came (not an older visit entered
    late)."""
    waiting = list(await session.scalars(
        select(FamilyMessage).where(FamilyMessage.answered_at.is_(None),
                                    FamilyMessage.household_id.is_not(None))))
    if not waiting:
        return 0
    household_ids = {m.household_id for m in waiting}
    contacts: dict[int, list[tuple[datetime, date, int | None]]] = {}
    for hid, recorded, day, volunteer in await session.execute(
        select(Visit.household_id, Visit.recorded_at, Visit.visited_on, Visit.volunteer_id)
        .where(Visit.household_id.in_(household_ids), Visit.outcome == VisitOutcome.DONE,
               Visit.kind.in_(ANSWERING_KINDS), Visit.volunteer_id.is_not(None))
        .where(Visit.recorded_at >= min(m.received_at for m in waiting))):
        contacts.setdefault(hid, []).append((recorded, day, volunteer))
    keys = {task_key(m.id): m for m in waiting}
    closed = {key: (done, assignee) for key, done, assignee in await session.execute(
        select(Task.key, Task.done_at, Task.assignee_id).where(
            Task.kind == CALL_TASK, Task.key.in_(list(keys)), Task.done_at.is_not(None)))}
    answered = 0
    for message in waiting:
        task = closed.get(task_key(message.id))
        came = message.received_at.astimezone(tz).date()
        later = sorted(c for c in contacts.get(message.household_id or 0, [])
                       if c[0] > message.received_at and c[1] >= came)
        if task is not None:
            message.answered_at, message.answered_by_id, message.answer_kind = task[0], task[1], "call"
        elif later:
            message.answered_at, message.answered_by_id, message.answer_kind = later[0][0], later[0][2], "visit"
        else:
            continue
        answered += 1
        for open_task in await session.scalars(select(Task).where(
                Task.key == task_key(message.id), Task.done_at.is_(None))):
            open_task.done_at = now  # the call it asked for has happened in another form
    return answered


async def escalate_unanswered(session: AsyncSession, now: datetime, policy: OutreachPolicy) -> int:
    """Send each family message unanswered past the limit to the coordinators, once."""
    cutoff = now - timedelta(hours=policy.answer_within_hours)
    items = list(await session.scalars(
        select(FamilyMessage).where(FamilyMessage.answered_at.is_(None), FamilyMessage.escalated_at.is_(None),
                                    FamilyMessage.received_at <= cutoff).order_by(FamilyMessage.id)))
    for item in items:
        household = await session.get(Household, item.household_id) if item.household_id else None
        label = (await household_labels(session, [household]))[household.id] if household else "—"
        person = await session.get(Person, item.person_id)
        volunteer = await volunteer_of(session, household.id if household else None)
        text = item.text if len(item.text) <= PREVIEW else item.text[:PREVIEW] + "…"
        reply = Reply(catalog.t("family_line.escalation", label=label, who=person.name if person else "—",
                                hours=f"{policy.answer_within_hours:g}",
                                volunteer=volunteer.name if volunteer else "—", text=text),
                      (Option(catalog.t("family_line.reply_option"),
                              FamilyReply.start_value(message_id=item.id)),))
        if household is not None:
            helpers = await alert_recipients(session, household.township_id)
        else:
            helpers = list(await session.scalars(select(Person).where(
                Person.role == Role.ADMIN, Person.active.is_(True))))
        for helper in helpers:
            await queue_message(session, person_id=helper.id, reply=reply, kind="escalation",
                                key=f"family_escalation:{item.id}:{helper.id}", now=now)
        item.escalated_at = now
    if items:
        log.info("family messages escalated count=%d", len(items))
    return len(items)


async def family_messages_job(app: App, at: datetime) -> dict[str, Any]:
    """The scheduler's entry point (bot/care/scheduler.py JOBS): one transaction per tick."""
    async with app.db.async_session() as session:
        answered = await notice_answers(session, at, app.settings.timezone)
        escalated = await escalate_unanswered(session, at, app.services.outreach)
    return {"answered": answered, "escalated": escalated}
