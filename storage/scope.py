"""Who may see which household: the one place the role-and-scope rule is written.

admin: the whole county; coordinator: their own township; volunteer: households currently
assigned to them; family member: their own household. Every query that lists or loads a
household for a person goes through `visible_households`.
"""

from __future__ import annotations

from sqlalchemy import Select, false, select

from storage.models import ContactAssignment, Household, HouseholdMember, Person, Role


def visible_households(person: Person) -> Select[Household]:
    query = select(Household).where(Household.erased_at.is_(None))
    if person.role == Role.ADMIN:
        return query
    if person.role == Role.COORDINATOR:
        if person.township_id is None:
            return query.where(false())
        return query.where(Household.township_id == person.township_id)
    if person.role == Role.VOLUNTEER:
        assigned = select(ContactAssignment.household_id).where(
            ContactAssignment.volunteer_id == person.id, ContactAssignment.ended_on.is_(None)
        )
        return query.where(Household.id.in_(assigned))
    if person.role == Role.FAMILY:
        own = select(HouseholdMember.household_id).where(HouseholdMember.person_id == person.id)
        return query.where(Household.id.in_(own))
    return query.where(false())


def can_see_household(person: Person, household_id: int) -> Select[Household]:
    return visible_households(person).where(Household.id == household_id)
