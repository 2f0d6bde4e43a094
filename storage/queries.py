"""Read queries shared by dialogs and commands; each returns model objects or plain rows.

The queries a chat step runs (a household list with labels, one household, a household's
members) are built once at import, per role where the scope rule applies, and executed with
bound values; those that only read a few columns return plain rows, not ORM entities.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    ContactAssignment,
    Household,
    HouseholdMember,
    Person,
    Role,
    Village,
    Visit,
)
from storage.prepared import Prepared
from storage.scope import in_scope, scope_params

_S = TypeVar("_S")

PARENTS = ("father", "mother")

_households = Household.__table__
_members = HouseholdMember.__table__
_people = Person.__table__
_villages = Village.__table__
# a parent, as plain comparisons (an IN list would be re-expanded into the SQL at every execution)
_IS_PARENT: ColumnElement[bool] = or_(*(_members.c.relation == relation for relation in PARENTS))


class HouseholdChoice(NamedTuple):
    """A household as a list shows it: its id and label."""

    id: int
    label: str


class MemberName(NamedTuple):
    """A living member of a household, as a question about "which of them?" needs them."""

    id: int  # the membership's id (HouseholdMember.id)
    relation: str
    name: str


def _label(code: str, parents: Sequence[str], village: str | None) -> str:
    """A short label: the code, the parents' names and the village."""
    return f"{code} {'、'.join(parents) or '—'}" + (f"（{village}）" if village else "")


# ------------------------------------------------------------------ households in scope

def _choices(role: str, *, one: bool) -> Select[Any]:
    """The households in scope (one by id, or the first `:limit` by code), each with its village
    and its parents' names: one row per parent (or one with no name), in label order."""
    picked = select(_households.c.id, _households.c.code, _households.c.village_id).where(in_scope(role))
    if one:
        picked = picked.where(_households.c.id == bindparam("household_id"))
    else:
        picked = picked.order_by(_households.c.code).limit(bindparam("limit"))
    chosen = picked.subquery("chosen")
    parents = and_(_members.c.household_id == chosen.c.id, _IS_PARENT)
    return (select(chosen.c.id, chosen.c.code, _villages.c.name, _people.c.name)
            .select_from(chosen.outerjoin(_villages, _villages.c.id == chosen.c.village_id)
                         .outerjoin(_members, parents)
                         .outerjoin(_people, _people.c.id == _members.c.person_id))
            .order_by(chosen.c.code, _members.c.id))


_SCOPE_KEYS = tuple(scope_params(Person()))
_LIST = {role.value: Prepared(_choices(role, one=False), keys=(*_SCOPE_KEYS, "limit")) for role in Role}
_ONE = {role.value: Prepared(_choices(role, one=True), keys=(*_SCOPE_KEYS, "household_id")) for role in Role}
_ENTITIES = {role.value: select(Household).where(in_scope(role)).order_by(Household.code) for role in Role}
_ENTITY = {role.value: select(Household).where(in_scope(role), Household.id == bindparam("household_id"))
           for role in Role}


def _statement(statements: dict[str, _S], person: Person) -> _S | None:
    return statements.get(person.role)  # None: a role that sees no household


def _grouped(rows: Iterable[Any]) -> list[HouseholdChoice]:
    order: list[int] = []
    parts: dict[int, tuple[str, str | None, list[str]]] = {}
    for hid, code, village, name in rows:
        if hid not in parts:
            order.append(hid)
            parts[hid] = (code, village, [])
        if name is not None:
            parts[hid][2].append(name)
    return [HouseholdChoice(hid, _label(parts[hid][0], parts[hid][2], parts[hid][1])) for hid in order]


async def household_choices(session: AsyncSession, person: Person, limit: int) -> list[HouseholdChoice]:
    """The first `limit` households `person` may see, by code, with their labels (one query)."""
    statement = _statement(_LIST, person)
    if statement is None:
        return []
    return _grouped(await statement.rows(session, {**scope_params(person), "limit": limit}))


async def household_choice(session: AsyncSession, person: Person, household_id: int) -> HouseholdChoice | None:
    """One household with its label if `person` may see it, else None (one query)."""
    statement = _statement(_ONE, person)
    if statement is None:
        return None
    rows = await statement.rows(session, {**scope_params(person), "household_id": household_id})
    found = _grouped(rows)
    return found[0] if found else None


_COUNT = {role.value: Prepared(select(func.count()).select_from(_households).where(in_scope(role)),
                               keys=_SCOPE_KEYS) for role in Role}


async def household_count(session: AsyncSession, person: Person) -> int:
    """How many households `person` may see."""
    statement = _statement(_COUNT, person)
    if statement is None:
        return 0
    row = await statement.first(session, scope_params(person))
    return int(row[0]) if row else 0


async def households_for(session: AsyncSession, person: Person) -> list[Household]:
    statement = _statement(_ENTITIES, person)
    if statement is None:
        return []
    return list(await session.scalars(statement, scope_params(person)))


async def household_for(session: AsyncSession, person: Person, household_id: int) -> Household | None:
    statement = _statement(_ENTITY, person)
    if statement is None:
        return None
    found: Household | None = await session.scalar(statement, {**scope_params(person), "household_id": household_id})
    return found


_PARENT_NAMES = (select(_members.c.household_id, _people.c.name)
                 .join(_people, _people.c.id == _members.c.person_id)
                 .where(_members.c.household_id.in_(bindparam("ids", expanding=True)), _IS_PARENT)
                 .order_by(_members.c.id))
_VILLAGE_NAMES = select(_villages.c.id, _villages.c.name).where(_villages.c.id.in_(bindparam("ids", expanding=True)))


async def household_labels(session: AsyncSession, households: Sequence[Household]) -> dict[int, str]:
    """A short label per household: its code, the parents' names and the village."""
    if not households:
        return {}
    names: dict[int, list[str]] = {h.id: [] for h in households}
    for hid, name in await session.execute(_PARENT_NAMES, {"ids": list(names)}):
        names[hid].append(name)
    village_ids = list({h.village_id for h in households if h.village_id})
    villages: dict[int, str] = {}
    if village_ids:
        villages = {vid: name for vid, name in await session.execute(_VILLAGE_NAMES, {"ids": village_ids})}
    return {h.id: _label(h.code, names[h.id], villages.get(h.village_id or -1)) for h in households}


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


_MEMBER_NAMES = Prepared(select(_members.c.id, _members.c.relation, _people.c.name)
                 .join(_people, _people.c.id == _members.c.person_id)
                 .where(_members.c.household_id == bindparam("household_id"), _members.c.alive.is_(True))
                 .order_by(_members.c.id), keys=("household_id",))


async def member_names(session: AsyncSession, household_id: int) -> list[MemberName]:
    """The living members of a household (membership id, relation, name), in order."""
    rows = await _MEMBER_NAMES.rows(session, {"household_id": household_id})
    return [MemberName(mid, relation, name) for mid, relation, name in rows]
