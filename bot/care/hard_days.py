"""A household's hard days, for broadcasts: the child's death anniversary and birthday, and 清明.

The same days the planner turns into "call gently" tasks (bot/care/planner.py); here they hold
back activity invitations, reminders and notices to the family until the day has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.care.birthdays import anniversaries_between
from bot.care.calendar import occurrences_between
from storage.models import DeceasedChild

QINGMING = "qingming"


class CareHardDays:
    """The dialogs' HardDays service, from the deceased children's dates and the calendar."""

    async def of(self, session: AsyncSession, household_ids: Sequence[int], start: date,
                 end: date) -> dict[int, set[date]]:
        ids = sorted(set(household_ids))
        if not ids:
            return {}
        qingming = {o.day for o in occurrences_between((QINGMING,), start, end)}
        out: dict[int, set[date]] = {i: set(qingming) for i in ids}
        rows = await session.execute(
            select(DeceasedChild.household_id, DeceasedChild.birth_date, DeceasedChild.death_date)
            .where(DeceasedChild.household_id.in_(ids)))
        for household_id, born, died in rows:
            for when in (born, died):
                if when is not None:
                    out[household_id].update(anniversaries_between(when, start, end))
        return {i: days for i, days in out.items() if days}
