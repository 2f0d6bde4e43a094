"""When a message cannot reach a family member, a person calls instead.

Any channel that gives up on a family message (WeChat outside its 48-hour window with no
template, SMS with no approved template) asks here; the family still hears from someone. One
open call task per member is enough: the volunteer reads every reason when they call.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.family_line import CALL_TASK
from storage.models import HouseholdMember, Task
from storage.queries import contact_volunteer

__all__ = ["CALL_TASK", "ask_volunteer_to_call"]


async def ask_volunteer_to_call(session: AsyncSession, person_id: int, reason: str,
                                now: datetime) -> Task | None:
    """A call task for the member's contact volunteer; None when one is open already or the
    person is in no household."""
    member = await session.scalar(select(HouseholdMember).where(HouseholdMember.person_id == person_id)
                                  .order_by(HouseholdMember.id).limit(1))
    if member is None:
        return None
    open_task = await session.scalar(select(Task.id).where(
        Task.kind == CALL_TASK, Task.member_id == member.id, Task.done_at.is_(None)).limit(1))
    if open_task is not None:
        return None
    volunteer = await contact_volunteer(session, member.household_id)
    task = Task(household_id=member.household_id, member_id=member.id,
                assignee_id=volunteer.id if volunteer is not None else None, kind=CALL_TASK,
                reason=reason, due_at=now, created_at=now)
    session.add(task)
    return task
