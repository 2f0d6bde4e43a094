"""Who may see which household: the one place the role-and-scope rule is written.

admin: the whole county; coordinator: their own township; volunteer: households currently
assigned to them; family member: their own household. Every query that lists or loads a
household for a person goes through this rule.

The rule is written once per role with the person's id and township as bound parameters
(`SCOPE_PERSON`, `SCOPE_TOWNSHIP`), so a query that runs on every chat step can be built once at
import and executed with `scope_params(person)`; `visible_households(person)` is the same rule
with the person's values already bound, for queries composed on the spot (the web console,
audiences). It is written on the tables' columns, not the mapped classes, so that a statement
built on it and on other table columns runs as plain Core (no ORM compile step, no entities).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, false, select

from storage.models import ContactAssignment, Household, HouseholdMember, Person, Role

SCOPE_PERSON = bindparam("scope_person_id", type_=Integer)
SCOPE_TOWNSHIP = bindparam("scope_township_id", type_=Integer)

_households = Household.__table__.c
_assignments = ContactAssignment.__table__.c
_members = HouseholdMember.__table__.c


def _rule(role: str) -> ColumnElement[bool]:
    """Which households a person of `role` may see, given SCOPE_PERSON and SCOPE_TOWNSHIP."""
    alive = _households.erased_at.is_(None)
    if role == Role.ADMIN:
        return alive
    if role == Role.COORDINATOR:
        # a coordinator without a township binds NULL, which equals no household's township
        return and_(alive, _households.township_id == SCOPE_TOWNSHIP)
    if role == Role.VOLUNTEER:
        assigned = select(_assignments.household_id).where(
            _assignments.volunteer_id == SCOPE_PERSON, _assignments.ended_on.is_(None))
        return and_(alive, _households.id.in_(assigned))
    if role == Role.FAMILY:
        own = select(_members.household_id).where(_members.person_id == SCOPE_PERSON)
        return and_(alive, _households.id.in_(own))
    return false()


RULES: dict[str, ColumnElement[bool]] = {role.value: _rule(role) for role in Role}
NOBODY: ColumnElement[bool] = false()


def in_scope(role: str) -> ColumnElement[bool]:
    """The rule for one role (unbound: execute with `scope_params`)."""
    return RULES.get(role, NOBODY)


def scope_params(person: Person) -> dict[str, Any]:
    """The values `in_scope`'s parameters take for this person."""
    return {SCOPE_PERSON.key: person.id, SCOPE_TOWNSHIP.key: person.township_id}


def visible_households(person: Person) -> Select[Household]:
    """The households `person` may see, as a select to compose (values bound)."""
    return select(Household).where(in_scope(person.role)).params(scope_params(person))


def can_see_household(person: Person, household_id: int) -> Select[Household]:
    return visible_households(person).where(Household.id == household_id)
