"""Who hears about something a township must act on today: a danger reading, a worrying
assessment, a need nobody took up, a family asking for a call, a message that could not be
delivered. The one place that rule is written."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Person, Role


async def alert_recipients(session: AsyncSession, township_id: int) -> list[Person]:
    """The township's active coordinators; where it has none, the county's admins."""
    rows = list(await session.scalars(
        select(Person).where(Person.role == Role.COORDINATOR, Person.township_id == township_id,
                             Person.active.is_(True))
    ))
    if rows:
        return rows
    return list(await session.scalars(select(Person).where(Person.role == Role.ADMIN, Person.active.is_(True))))
