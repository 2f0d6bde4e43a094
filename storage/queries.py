"""Read queries shared by dialogs and commands; each returns model objects or plain rows."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    ContactAssignment,
    Household,
    HouseholdMember,
    Person,
    Village,
    Visit,
)
from storage.scope import can_see_household, visible_households


async def households_for(session: AsyncSession, person: Person) -> list[Household]:
    rows = await session.scalars(visible_households(person).order_by(Household.code))
    return list(rows)


async def household_for(session: AsyncSession, person: Person, household_id: int) -> Household | None:
    return await session.scalar(can_see_household(person, household_id))


async def household_labels(session: AsyncSession, households: list[Household]) -> dict[int, str]:
    """A short label per household: its code, the parents' names and the village."""
    if not households:
        return {}
    ids = [h.id for h in households]
    names: dict[int, list[str]] = {i: [] for i in ids}
    rows = await session.execute(
        select(HouseholdMember.household_id, Person.name)
        .join(Person, Person.id == HouseholdMember.person_id)
        .where(HouseholdMember.household_id.in_(ids), HouseholdMember.relation.in_(("father", "mother")))
        .order_by(HouseholdMember.id)
    )
    for hid, name in rows:
        names[hid].append(name)
    villages = dict((await session.execute(
        select(Village.id, Village.name).where(Village.id.in_({h.village_id for h in households if h.village_id}))
    )).all())
    out = {}
    for h in households:
        who = "、".join(names[h.id]) or "—"
        village = villages.get(h.village_id or -1)
        out[h.id] = f"{h.code} {who}" + (f"（{village}）" if village else "")
    return out


async def last_contact(session: AsyncSession, household_ids: list[int]) -> dict[int, date]:
    if not household_ids:
        return {}
    rows = await session.execute(
        select(Visit.household_id, func.max(Visit.visited_on))
        .where(Visit.household_id.in_(household_ids), Visit.outcome == "done")
        .group_by(Visit.household_id)
    )
    return dict(rows.all())


async def contact_volunteer(session: AsyncSession, household_id: int) -> Person | None:
    return await session.scalar(
        select(Person).join(ContactAssignment, ContactAssignment.volunteer_id == Person.id)
        .where(ContactAssignment.household_id == household_id, ContactAssignment.ended_on.is_(None))
        .order_by(ContactAssignment.started_on.desc())
        .limit(1)
    )


async def members_of(session: AsyncSession, household_id: int) -> list[tuple[HouseholdMember, Person]]:
    rows = await session.execute(
        select(HouseholdMember, Person).join(Person, Person.id == HouseholdMember.person_id)
        .where(HouseholdMember.household_id == household_id, HouseholdMember.alive.is_(True))
        .order_by(HouseholdMember.id)
    )
    return [(member, person) for member, person in rows.all()]
