"""A family's line back: their words kept and forwarded, and the rule of what counts as answered.

Shared by the family dialogs and the scheduler's job in `bot/care/family_line.py`. Answered
means: a reply or a call recorded for the message; the call task closed; or a home visit, phone
call or WeChat contact recorded for the household after the message came in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.alerts import alert_recipients
from domain.outreach import volunteer_of
from storage.models import FamilyMessage, Household, HouseholdMember, Person, Role, Task, Visit

CALL_TASK = "call_family"
THREAD = 5


def task_key(message_id: int) -> str:
    return f"family_message:{message_id}"


async def recipients_for(session: AsyncSession, household: Household | None) -> list[Person]:
    """Who hears a family's words: the contact volunteer, else the township's coordinators
    (else the county's admins)."""
    volunteer = await volunteer_of(session, household.id if household else None)
    if volunteer is not None:
        return [volunteer]
    if household is not None:
        return await alert_recipients(session, household.township_id)
    return list(await session.scalars(select(Person).where(Person.role == Role.ADMIN, Person.active.is_(True))))


async def mark_answered(session: AsyncSession, *, person_id: int, household_id: int | None,
                        by: int | None, kind: str, at: datetime) -> int:
    """Every message the member sent up to `at` and not yet answered is answered now."""
    query = (update(FamilyMessage)
             .where(FamilyMessage.person_id == person_id, FamilyMessage.answered_at.is_(None),
                    FamilyMessage.received_at <= at)
             .values(answered_at=at, answered_by_id=by, answer_kind=kind)
             .execution_options(synchronize_session=False))
    if household_id is not None:
        query = query.where(FamilyMessage.household_id == household_id)
    result = await session.execute(query)
    assert isinstance(result, CursorResult)
    return result.rowcount or 0


@dataclass(frozen=True)
class Received:
    message: FamilyMessage
    recipients: list[Person]
    volunteer: Person | None


async def receive(session: AsyncSession, *, person: Person, member: HouseholdMember | None,
                  household: Household | None, channel: str, text: str, wants_call: bool,
                  call_reason: str, now: datetime) -> Received:
    """Keep a family member's words; a wish for a call becomes the volunteer's call task."""
    message = FamilyMessage(household_id=household.id if household else None, person_id=person.id,
                            channel=channel, text=text, received_at=now, wants_call=wants_call)
    session.add(message)
    await session.flush()
    recipients = await recipients_for(session, household)
    volunteer = await volunteer_of(session, household.id if household else None)
    message.forwarded_to_id = recipients[0].id if recipients else None
    if wants_call and household is not None:
        session.add(Task(household_id=household.id, member_id=member.id if member else None,
                         assignee_id=volunteer.id if volunteer else None, kind=CALL_TASK,
                         reason=call_reason, key=task_key(message.id), due_at=now, created_at=now))
    return Received(message, recipients, volunteer)


async def record_answer(session: AsyncSession, *, message: FamilyMessage, person: Person,
                        member: HouseholdMember | None, by: Person, mode: str, today: date,
                        now: datetime) -> None:
    """A reply sent ("reply") or a call made ("call"): it counts as a contact (a Visit), closes
    the call task for a call, and answers the member's waiting messages."""
    assert message.household_id is not None
    if mode == "reply":
        kind, source = "message", "reply"
    else:
        kind, source = "phone", "family_line"
        await session.execute(
            update(Task).where(Task.household_id == message.household_id, Task.kind == CALL_TASK,
                               Task.done_at.is_(None),
                               (Task.member_id == (member.id if member else -1)) | (Task.key == task_key(message.id)))
            .values(done_at=now).execution_options(synchronize_session=False))
    visit = Visit(household_id=message.household_id, member_id=member.id if member else None,
                  volunteer_id=by.id, visited_on=today, kind=kind, source=source, recorded_at=now)
    session.add(visit)
    await session.flush()
    await mark_answered(session, person_id=person.id, household_id=message.household_id, by=by.id,
                        kind="reply" if mode == "reply" else "call", at=now)
