"""Case records: visits, readings (with their danger alert), assessments, follow-ups,
services and insurances, and the intake's drafts and case file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import insert, select

from domain import assessments, casework, intake, readings
from domain.alerts import alert_recipients
from domain.casebook.base import BookBase
from domain.messages import Reply
from storage.base import table_of
from storage.models import (
    Assessment,
    DeceasedChild,
    FollowUp,
    HealthReading,
    Household,
    IntakeDraft,
    Person,
    ServiceEntitlement,
    Task,
    Visit,
    VisitOutcome,
)
from storage.prepared import Prepared

# Visits and readings are only written here and nothing reads them back as objects in the same
# step: a plain INSERT built once (the columns' types still encrypt and convert every value).
_VISITS, _READINGS = table_of(Visit), table_of(HealthReading)
_ADD_VISIT = Prepared(insert(_VISITS).returning(_VISITS.c.id), keys=(
    "household_id", "volunteer_id", "visited_on", "kind", "outcome", "occasion", "physical_state",
    "mood", "needs", "money_fen", "gifts", "follow_up", "recorded_at"))
_ADD_READING = Prepared(insert(_READINGS).returning(_READINGS.c.id), keys=(
    "household_id", "member_id", "volunteer_id", "measured_at", "systolic", "diastolic", "pulse",
    "glucose_mmol", "glucose_context", "advice", "danger", "danger_reasons", "recorded_at"))


@dataclass(frozen=True)
class VisitRecord:
    """A visit as a volunteer reports it (the visit dialog's answers, checked)."""

    household_id: int
    visited_on: date
    kind: str
    outcome: str = VisitOutcome.DONE
    occasion: str | None = None
    physical: str | None = None
    mood: str | None = None
    needs: str | None = None
    money_fen: int = 0
    gifts: str | None = None
    follow_up: bool = False


@dataclass(frozen=True)
class VisitSaved:
    visit_id: int
    paced_days: int | None  # the household's new contact rhythm after a declined visit


@dataclass(frozen=True)
class AssessmentRecord:
    household_id: int
    member_id: int | None
    scores: dict[str, int]
    current_problems: str | None
    problems_to_solve: str | None


@dataclass(frozen=True)
class ReadingSaved:
    reading_id: int
    danger: bool


class CareRecords(BookBase):
    """Visits, readings, assessments, follow-ups, services and the intake's case file."""

    # ------------------------------------------------------------------ records

    async def record_visit(self, record: VisitRecord) -> VisitSaved:
        """Save a visit; a need becomes a follow-up, a declined visit paces the household down."""
        me = self._me()
        now = self.now()
        (visit_id,), = await _ADD_VISIT.rows(self._session, dict(
            household_id=record.household_id, volunteer_id=me.id, visited_on=record.visited_on,
            kind=record.kind, outcome=record.outcome, occasion=record.occasion,
            physical_state=record.physical, mood=record.mood, needs=record.needs or None,
            money_fen=record.money_fen, gifts=record.gifts or None, follow_up=record.follow_up,
            recorded_at=now,
        ))
        if record.follow_up:
            await casework.open_follow_up(self._session, household_id=record.household_id,
                                          source="visit", source_id=visit_id, text=record.needs or None,
                                          now=now, fallback_owner_id=me.id)
        await self.audit("write", "visit", visit_id, record.household_id)
        paced: int | None = None
        if record.outcome == VisitOutcome.DECLINED:
            household = await self._session.get(Household, record.household_id)
            assert household is not None
            paced = casework.pace_down(household, now, self.services.casework)
            await self.audit("write", "household", record.household_id, record.household_id,
                             "paced_down")
        return VisitSaved(visit_id, paced)

    async def record_reading(self, *, household_id: int, member_id: int | None,
                             reading: readings.Reading, advice: str | None,
                             alert_text: str) -> ReadingSaved:
        """Save a reading; one in the danger range alerts whoever must hear of it, at once
        (`alert_text`, worded by the dialog, says what was measured)."""
        me = self._me()
        now = self.now()
        reasons = readings.danger_reasons(reading, self.services.thresholds)
        (reading_id,), = await _ADD_READING.rows(self._session, dict(
            household_id=household_id, member_id=member_id, volunteer_id=me.id, measured_at=now,
            systolic=reading.systolic, diastolic=reading.diastolic, pulse=reading.pulse,
            glucose_mmol=reading.glucose, glucose_context=reading.glucose_context,
            advice=advice or None, danger=bool(reasons), danger_reasons=",".join(reasons) or None,
            recorded_at=now,
        ))
        await self.audit("write", "reading", reading_id, household_id)
        if reasons:
            household = await self._session.get(Household, household_id)
            assert household is not None
            for person in await alert_recipients(self._session, household.township_id):
                await self.notify(person.id, Reply(alert_text), kind="alert",
                                  key=f"alert:reading:{reading_id}:{person.id}")
        return ReadingSaved(reading_id, bool(reasons))

    async def previous_assessment(self, household_id: int, member_id: int | None,
                                  before_id: int | None = None) -> Assessment | None:
        return await assessments.previous_assessment(self._session, household_id, member_id, before_id)

    async def record_assessment(self, record: AssessmentRecord, *, follow_up_text: str,
                                alert_text: str) -> bool:
        """Save an assessment; an urgent one opens a follow-up and alerts the township at once
        (the follow-up counts as escalated: the coordinators already know). True if urgent."""
        me = self._me()
        now = self.now()
        row = Assessment(household_id=record.household_id, member_id=record.member_id,
                         volunteer_id=me.id, assessed_on=self.services.today(), **record.scores,
                         current_problems=record.current_problems or None,
                         problems_to_solve=record.problems_to_solve or None, recorded_at=now)
        self._session.add(row)
        await self._session.flush()
        await self.audit("write", "assessment", row.id, record.household_id)
        if not assessments.is_urgent(record.scores):
            return False
        follow = await casework.open_follow_up(
            self._session, household_id=record.household_id, source="assessment",
            source_id=row.id, text=follow_up_text, now=now, fallback_owner_id=me.id)
        household = await self._session.get(Household, record.household_id)
        assert household is not None
        for person in await alert_recipients(self._session, household.township_id):
            await self.notify(person.id, Reply(alert_text), kind="alert",
                              key=f"alert:assessment:{row.id}:{person.id}")
        follow.escalated_at = now
        return True

    # ------------------------------------------------------------------ intake

    async def unfiled(self, households: list[Household]) -> list[Household]:
        """Those of `households` that have no case file yet."""
        filed = await intake.filed_among(self._session, [h.id for h in households])
        return [h for h in households if h.id not in filed]

    async def drafts_among(self, household_ids: list[int]) -> set[int]:
        return await intake.drafts_among(self._session, household_ids)

    async def intake_draft(self, household_id: int) -> IntakeDraft | None:
        return await intake.draft_of(self._session, household_id)

    async def save_intake_draft(self, household_id: int, state: str, data: dict[str, Any]) -> None:
        """Keep a paused intake's answers (by whoever paused it, now)."""
        draft = await intake.draft_of(self._session, household_id)
        if draft is None:
            draft = IntakeDraft(household_id=household_id, state="children", data={})
            self._session.add(draft)
        draft.volunteer_id = self._me().id
        draft.state = state
        draft.data = data
        draft.updated_at = self.now()
        await self._session.flush()
        await self.audit("write", "intake_draft", draft.id, draft.household_id)

    async def drop_intake_draft(self, household_id: int) -> None:
        draft = await intake.draft_of(self._session, household_id)
        if draft is not None:
            await self._session.delete(draft)

    async def person_name(self, person_id: int | None) -> str | None:
        person = await self._session.get(Person, person_id) if person_id else None
        return person.name if person is not None else None

    async def children_of(self, household_id: int) -> list[DeceasedChild]:
        return list(await self._session.scalars(select(DeceasedChild).where(
            DeceasedChild.household_id == household_id).order_by(DeceasedChild.id)))

    async def file_case(self, record: intake.CaseFileRecord) -> str:
        """Write the household's case file: "saved", "already_filed" or "not_allowed"."""
        household = await self.household(record.household_id)
        if household is None:
            return "not_allowed"
        if await intake.filed_among(self._session, [household.id]):
            return "already_filed"
        file = await intake.file_case(self._session, household, record, recorded_by_id=self._me().id,
                                      now=self.now())
        await self.audit("write", "case_file", file.id, household.id)
        return "saved"

    # ------------------------------------------------------------------ services

    async def entitlements(self, household_id: int, member_id: int | None,
                           service: str | None = None) -> list[ServiceEntitlement]:
        """A member's (or, with no member, the household's) services, oldest first."""
        query = select(ServiceEntitlement).where(
            ServiceEntitlement.household_id == household_id,
            ServiceEntitlement.member_id.is_(None) if member_id is None else ServiceEntitlement.member_id == member_id)
        if service is not None:
            query = query.where(ServiceEntitlement.service == service)
        return list(await self._session.scalars(query.order_by(ServiceEntitlement.id)))

    async def save_entitlement(self, *, household_id: int, member_id: int | None, service: str,
                               status: str, dates: dict[str, date | None],
                               ) -> tuple[ServiceEntitlement, Task | None]:
        """Record a service's status and dates; an insurance running out makes (or closes) the
        contact volunteer's renewal task (domain/casework.py). Returns the row and that task."""
        rows = await self.entitlements(household_id, member_id, service)
        row = rows[-1] if rows else None
        if row is None:
            row = ServiceEntitlement(household_id=household_id, member_id=member_id,
                                     service=service, status=status)
            self._session.add(row)
        row.status = status
        for key, value in dates.items():
            setattr(row, key, value)
        row.updated_by_id = self._me().id
        row.updated_at = self.now()
        await self._session.flush()
        await self.audit("write", "service", row.id, row.household_id, f"{row.service}:{row.status}")
        task = await casework.sync_expiry_task(self._session, row, now=self.now(),
                                               tz=self.services.timezone, policy=self.services.casework)
        return row, task

    # ------------------------------------------------------------------ follow-ups

    async def open_follow_ups(self, statuses: tuple[str, ...], limit: int) -> list[FollowUp]:
        """Open needs of the sender's households, escalated ones first, oldest first."""
        return list(await self._session.scalars(
            select(FollowUp).where(FollowUp.status.in_(statuses),
                                   FollowUp.household_id.in_(self._visible_ids()))
            .order_by(FollowUp.escalated_at.is_(None), FollowUp.created_at).limit(limit)))

    async def follow_up(self, follow_up_id: int) -> FollowUp | None:
        """One follow-up of a household the sender may see, else None."""
        return await self._session.scalar(select(FollowUp).where(
            FollowUp.id == follow_up_id, FollowUp.household_id.in_(self._visible_ids())))

    async def households_by_id(self, household_ids: set[int]) -> list[Household]:
        return list(await self._session.scalars(
            select(Household).where(Household.id.in_(household_ids))))

    async def mark_follow_up(self, item: FollowUp, status: str) -> None:
        """Someone acted on a need (stops the escalation clock); `done` closes it."""
        item.acted_at = item.acted_at or self.now()
        item.status = status
        await self.audit("write", "follow_up", item.id, item.household_id, item.status)

