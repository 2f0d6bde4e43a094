"""What a volunteer's card of one household shows, read in one place: facts, not words.

The dialog (`dialogs/my_families.py`) turns these into the card's lines; the choice of what a
volunteer sees before the next contact — and what stays in the file (the child's details) —
is made here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from domain.assessments import previous_assessment
from domain.outreach import SMS, confirmed, current_consent, family_address, preference_of
from storage.models import (
    Assessment,
    CaseFile,
    FollowUp,
    HealthReading,
    Household,
    HouseholdMember,
    Person,
    ServiceEntitlement,
    ServiceStatus,
    Visit,
    VisitKind,
    VisitOutcome,
)
from storage.queries import contact_volunteer, members_of

CALLS = (VisitKind.PHONE, VisitKind.WECHAT)
READINGS_LOOKED_AT = 8
ASSESSMENTS_SHOWN = 3


@dataclass
class CardFacts:
    members: list[tuple[HouseholdMember, Person]]
    last_call: date | None
    last_home_visit: date | None
    last_contact: date | None  # any kind, done
    last_attempt: Visit | None  # the latest visit that did not happen
    bp_readings: list[HealthReading]  # newest first
    glucose_readings: list[HealthReading]
    assessments: list[tuple[Assessment, Assessment | None]]  # latest per person, with the one before
    open_follow_ups: list[FollowUp]
    services: list[ServiceEntitlement]
    volunteer: Person | None
    has_case_file: bool
    names: dict[int, str] = field(default_factory=dict)  # member id → name
    # person id → how messages reach them: "stopped", "pending" (recorded, not yet confirmed),
    # "sms:<number>", or the chat channel's name; members without consent are absent
    reach: dict[int, str] = field(default_factory=dict)


async def reach_of(session: AsyncSession, person_id: int) -> str | None:
    """How greetings reach a member, for the card: the volunteer must know an SMS family."""
    consent = await current_consent(session, person_id)
    if consent is None:
        return None
    preference = await preference_of(session, person_id)
    if preference is not None and preference.stopped_at is not None:
        return "stopped"
    if not confirmed(consent):
        return "pending"
    address = await family_address(session, person_id, preference.channel if preference else None)
    if address is None:
        return "unreachable"
    return f"{SMS}:{address.address}" if address.channel == SMS else address.channel


def _latest(kinds: tuple[str, ...]) -> Any:
    return func.max(case((Visit.kind.in_(kinds), Visit.visited_on)))


# the last call, home visit and contact of any kind that happened: one statement, built once
_LAST_CONTACTS = select(_latest(CALLS), _latest((VisitKind.HOME,)), _latest(tuple(VisitKind))).where(
    Visit.household_id == bindparam("household_id"), Visit.outcome == VisitOutcome.DONE)


async def _last_contacts(session: AsyncSession, household_id: int) -> tuple[date | None, ...]:
    row = (await session.execute(_LAST_CONTACTS, {"household_id": household_id})).one()
    return tuple(row)


async def _readings(session: AsyncSession, household_id: int,
                    column: InstrumentedAttribute[Any]) -> list[HealthReading]:
    return list(await session.scalars(
        select(HealthReading).where(HealthReading.household_id == household_id, column.is_not(None))
        .order_by(HealthReading.measured_at.desc()).limit(READINGS_LOOKED_AT)))


async def card_facts(session: AsyncSession, household: Household) -> CardFacts:
    hid = household.id
    members = await members_of(session, hid)
    latest_ids = select(func.max(Assessment.id)).where(Assessment.household_id == hid) \
        .group_by(Assessment.member_id)
    latest = list(await session.scalars(select(Assessment).where(Assessment.id.in_(latest_ids))
                                        .order_by(Assessment.assessed_on.desc()).limit(ASSESSMENTS_SHOWN)))
    assessments = [(row, await previous_assessment(session, hid, row.member_id, before_id=row.id))
                   for row in latest]
    last_call, last_home_visit, last_contact = await _last_contacts(session, hid)
    return CardFacts(
        members=members,
        last_call=last_call,
        last_home_visit=last_home_visit,
        last_contact=last_contact,
        last_attempt=await session.scalar(
            select(Visit).where(Visit.household_id == hid, Visit.outcome != VisitOutcome.DONE)
            .order_by(Visit.visited_on.desc(), Visit.id.desc()).limit(1)),
        bp_readings=await _readings(session, hid, HealthReading.systolic),
        glucose_readings=await _readings(session, hid, HealthReading.glucose_mmol),
        assessments=assessments,
        open_follow_ups=list(await session.scalars(
            select(FollowUp).where(FollowUp.household_id == hid,
                                   FollowUp.status.in_(("open", "in_progress")))
            .order_by(FollowUp.created_at))),
        services=list(await session.scalars(
            select(ServiceEntitlement).where(ServiceEntitlement.household_id == hid,
                                             ServiceEntitlement.status != ServiceStatus.NOT_NEEDED)
            .order_by(ServiceEntitlement.member_id, ServiceEntitlement.id))),
        volunteer=await contact_volunteer(session, hid),
        has_case_file=await session.scalar(select(CaseFile.id).where(CaseFile.household_id == hid)) is not None,
        names={m.id: p.name for m, p in members},
        reach={p.id: how for _m, p in members if (how := await reach_of(session, p.id)) is not None},
    )
