"""Who a broadcast may reach: the one place the scope rule for activity invitations is written.

A coordinator reaches only people of their own township; an admin (county) may reach a chosen
township or every volunteer. Households are checked through `storage.scope.visible_households`,
so broadcast scope and read scope cannot drift apart. Families are reached only when they asked
for activity invitations (Preference.activities), have not stopped all messages, and their
consent is not withdrawn; Mother's and Father's Day activities also need that occasion's own
agreement, because those days can hurt.

The audience is resolved when invitations are sent (not when the activity is drafted), so a
family who opts out before a scheduled send is not invited.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Consent, Household, HouseholdMember, Person, Preference, Role
from storage.scope import visible_households


class AudienceKind(enum.StrEnum):
    TOWNSHIP_VOLUNTEERS = "township_volunteers"
    ALL_VOLUNTEERS = "all_volunteers"
    TOWNSHIP_FAMILIES = "township_families"
    HOUSEHOLDS = "households"


TOWNSHIP_BOUND = frozenset({AudienceKind.TOWNSHIP_VOLUNTEERS, AudienceKind.TOWNSHIP_FAMILIES})
ORGANISERS = frozenset({Role.COORDINATOR, Role.ADMIN})
# activity types whose invitations need the family's separate yes to that day
OCCASION_CONSENT = {"mothers_day_letter": Preference.mothers_day,
                    "fathers_day_letter": Preference.fathers_day}


class AudienceNotAllowed(Exception):
    """The sender may not reach this audience (role or township scope)."""


@dataclass(frozen=True)
class Recipient:
    person_id: int
    household_id: int | None = None


def audiences_for(person: Person) -> list[AudienceKind]:
    """The audience kinds a person may choose, in the order a menu shows them."""
    if person.role == Role.ADMIN:
        return [AudienceKind.ALL_VOLUNTEERS, AudienceKind.TOWNSHIP_VOLUNTEERS,
                AudienceKind.TOWNSHIP_FAMILIES, AudienceKind.HOUSEHOLDS]
    if person.role == Role.COORDINATOR and person.township_id is not None:
        return [AudienceKind.TOWNSHIP_VOLUNTEERS, AudienceKind.TOWNSHIP_FAMILIES,
                AudienceKind.HOUSEHOLDS]
    return []


def needs_township_choice(person: Person, kind: str) -> bool:
    """An admin picks the township of a township-bound audience; a coordinator has their own."""
    return person.role == Role.ADMIN and kind in TOWNSHIP_BOUND


def checked_audience(person: Person, audience: dict[str, Any]) -> dict[str, Any]:
    """The audience with its township pinned by scope; raises AudienceNotAllowed if out of scope."""
    kind = audience.get("kind")
    if kind not in audiences_for(person):
        raise AudienceNotAllowed(str(kind))
    out: dict[str, Any] = {"kind": kind}
    if kind in TOWNSHIP_BOUND:
        township_id = audience.get("township_id")
        if person.role == Role.COORDINATOR:
            if township_id not in (None, person.township_id):
                raise AudienceNotAllowed("township")
            township_id = person.township_id
        if township_id is None:
            raise AudienceNotAllowed("township")
        out["township_id"] = int(township_id)
    if kind == AudienceKind.HOUSEHOLDS:
        ids = audience.get("household_ids") or []
        if not ids or not all(isinstance(i, int) for i in ids):
            raise AudienceNotAllowed("households")
        out["household_ids"] = sorted(set(ids))
    return out


def activity_township(person: Person, audience: dict[str, Any]) -> int | None:
    """The township an activity belongs to (for listing and scope); None for county-wide."""
    if person.role == Role.COORDINATOR:
        return person.township_id
    return audience.get("township_id")


def _opted_in_members(households: Select[Household], activity_type: str | None,
                      ) -> Select[int, int]:
    scoped = households.with_only_columns(Household.id).scalar_subquery()
    active_consent = exists().where(Consent.person_id == Person.id, Consent.withdrawn_at.is_(None))
    query = (
        select(HouseholdMember.person_id, HouseholdMember.household_id)
        .join(Person, Person.id == HouseholdMember.person_id)
        .join(Preference, Preference.person_id == Person.id)
        .where(HouseholdMember.household_id.in_(scoped), HouseholdMember.alive.is_(True),
               Person.active.is_(True), Person.role == Role.FAMILY,
               Preference.activities.is_(True), Preference.stopped_at.is_(None), active_consent)
        .order_by(HouseholdMember.household_id, HouseholdMember.id)
    )
    occasion = OCCASION_CONSENT.get(activity_type or "")
    if occasion is not None:
        query = query.where(occasion.is_(True))
    return query


async def resolve_audience(session: AsyncSession, person: Person, audience: dict[str, Any],
                           activity_type: str | None = None) -> list[Recipient]:
    """Everyone `person` may invite within `audience`, once each, in a stable order."""
    checked = checked_audience(person, audience)
    kind = checked["kind"]
    if kind in (AudienceKind.TOWNSHIP_VOLUNTEERS, AudienceKind.ALL_VOLUNTEERS):
        query = select(Person.id).where(Person.role == Role.VOLUNTEER, Person.active.is_(True))
        if kind == AudienceKind.TOWNSHIP_VOLUNTEERS:
            query = query.where(Person.township_id == checked["township_id"])
        return [Recipient(pid) for pid in await session.scalars(query.order_by(Person.id))]
    households = visible_households(person)
    if kind == AudienceKind.TOWNSHIP_FAMILIES:
        households = households.where(Household.township_id == checked["township_id"])
    else:
        wanted = checked["household_ids"]
        visible = set(await session.scalars(
            households.with_only_columns(Household.id).where(Household.id.in_(wanted))))
        if visible != set(wanted):
            raise AudienceNotAllowed("households")
        households = households.where(Household.id.in_(wanted))
    rows = await session.execute(_opted_in_members(households, activity_type))
    seen: set[int] = set()
    out = []
    for person_id, household_id in rows:
        if person_id not in seen:
            seen.add(person_id)
            out.append(Recipient(person_id, household_id))
    return out
