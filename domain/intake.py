"""The intake visit's records: drafts that wait between visits, and the case file (一户一档).

A paused intake is a draft — not the file — that anyone who may see the household can carry on
another day. Confirming writes the file once per household, replaces the deceased children's
records if the volunteer corrected them, sets the household's contact rhythm, and turns the
family's stated needs into a follow-up; the draft is then gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.casework import open_follow_up
from storage.models import CaseFile, DeceasedChild, Household, IntakeDraft, VisitPreference


@dataclass(frozen=True)
class ChildRecord:
    name: str | None
    birth_date: date | None
    death_date: date | None
    cause: str | None


@dataclass(frozen=True)
class CaseFileRecord:
    household_id: int
    economic: str | None
    difficulty: str | None
    needs: str | None
    expectation: str | None
    accepts: str
    pace_label: str | None
    pace_days: int | None
    member_notes: dict[str, Any]
    children: list[ChildRecord] | None = None  # None: the children's records stay as they are
    needs_follow_up: bool = False


async def filed_among(session: AsyncSession, household_ids: list[int]) -> set[int]:
    if not household_ids:
        return set()
    return set(await session.scalars(
        select(CaseFile.household_id).where(CaseFile.household_id.in_(household_ids))))


async def drafts_among(session: AsyncSession, household_ids: list[int]) -> set[int]:
    if not household_ids:
        return set()
    return set(await session.scalars(
        select(IntakeDraft.household_id).where(IntakeDraft.household_id.in_(household_ids))))


async def draft_of(session: AsyncSession, household_id: int) -> IntakeDraft | None:
    return await session.scalar(select(IntakeDraft).where(IntakeDraft.household_id == household_id))


async def file_case(session: AsyncSession, household: Household, record: CaseFileRecord, *,
                    recorded_by_id: int, now: datetime) -> CaseFile:
    file = CaseFile(
        household_id=household.id, economic_security=record.economic or None,
        biggest_difficulty=record.difficulty or None, needs=record.needs or None,
        elder_care_expectation=record.expectation or None, accepts_visits=record.accepts,
        visit_pace=record.pace_label, member_notes=record.member_notes,
        recorded_by_id=recorded_by_id, confirmed_at=now, updated_at=now,
    )
    session.add(file)
    if record.children is not None:
        await session.execute(delete(DeceasedChild).where(DeceasedChild.household_id == household.id))
        for child in record.children:
            session.add(DeceasedChild(household_id=household.id, name=child.name,
                                      birth_date=child.birth_date, death_date=child.death_date,
                                      death_cause=child.cause))
    household.visit_preference = record.accepts
    household.visit_pace_days = record.pace_days
    household.refused_at = now if record.accepts == VisitPreference.REFUSED else household.refused_at
    await session.flush()
    if record.needs_follow_up and record.needs:
        await open_follow_up(session, household_id=household.id, source="intake", source_id=file.id,
                             text=record.needs, now=now, fallback_owner_id=recorded_by_id)
    await session.execute(delete(IntakeDraft).where(IntakeDraft.household_id == household.id))
    return file
