"""The casebook: what one step of a dialog may read and write, for one person, in one unit of work.

The runner opens a transaction per inbound message and hands the dialog a `Casebook` bound to it
and to the sender (through `StepContext.book`). A dialog asks it for what it needs — the
households in the sender's scope, their members, record a visit or a reading, open a
follow-up, queue a message — and never holds the ORM session itself. Every read of a household
goes through the scope rule (`storage.scope`), so a forged or stale household id answers None,
never another township's family. What is written is only flushed here: the runner commits the
whole step or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import (
    assessments,
    casework,
    enrolment,
    family_line,
    intake,
    invitations,
    outreach,
    readings,
)
from domain.alerts import alert_recipients
from domain.family_card import CardFacts, card_facts
from domain.messages import UNROUTED, Attachment, Reply, queue_message
from domain.services import Services, TaskView
from storage.activity_stats import Counts, count_query, fold_counts, visible_activities
from storage.audience import activity_township, checked_audience
from storage.audit import record_audit
from storage.console_auth import issue_link
from storage.models import (
    Activity,
    Assessment,
    ChannelAddress,
    Consent,
    DeceasedChild,
    FamilyMessage,
    FollowUp,
    HealthReading,
    Household,
    HouseholdMember,
    IntakeDraft,
    Invitation,
    InviteCode,
    OutboxMessage,
    Person,
    Preference,
    Role,
    ServiceEntitlement,
    Task,
    Township,
    Visit,
    VisitOutcome,
)
from storage.queries import (
    household_for,
    household_labels,
    households_for,
    last_contact,
    members_of,
)
from storage.scope import visible_households


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


class Casebook:
    """The narrow API dialogs use; one per step, bound to the step's session and sender."""

    def __init__(self, session: AsyncSession, services: Services, actor: Person | None) -> None:
        self._session = session
        self.services = services
        self.actor = actor

    def _me(self) -> Person:
        if self.actor is None:
            raise PermissionError("a step without a known sender cannot read case records")
        return self.actor

    def now(self) -> datetime:
        return self.services.now()

    # ------------------------------------------------------------------ households

    async def households(self) -> list[Household]:
        """The households the sender may see, by code."""
        return await households_for(self._session, self._me())

    async def household(self, household_id: int) -> Household | None:
        """One household if the sender may see it, else None (a forwarded or forged button)."""
        return await household_for(self._session, self._me(), household_id)

    async def labels(self, households: list[Household]) -> dict[int, str]:
        return await household_labels(self._session, households)

    async def label(self, household: Household) -> str:
        return (await household_labels(self._session, [household]))[household.id]

    async def members(self, household_id: int) -> list[tuple[HouseholdMember, Person]]:
        """The living members of a household, with their person records."""
        return await members_of(self._session, household_id)

    async def last_contact(self, household_ids: list[int]) -> dict[int, date]:
        return await last_contact(self._session, household_ids)

    async def card(self, household: Household) -> CardFacts:
        """What the household's card shows (the caller got `household` through the scope rule
        and audits the opening: chat and the web console each say where it was opened)."""
        return await card_facts(self._session, household)

    async def due_tasks(self, household_id: int) -> list[TaskView]:
        return await self.services.tasks.for_household(self._session, household_id, self.now())

    # ------------------------------------------------------------------ records

    async def record_visit(self, record: VisitRecord) -> VisitSaved:
        """Save a visit; a need becomes a follow-up, a declined visit paces the household down."""
        me = self._me()
        now = self.now()
        visit = Visit(
            household_id=record.household_id, volunteer_id=me.id, visited_on=record.visited_on,
            kind=record.kind, outcome=record.outcome, occasion=record.occasion,
            physical_state=record.physical, mood=record.mood, needs=record.needs or None,
            money_fen=record.money_fen, gifts=record.gifts or None, follow_up=record.follow_up,
            recorded_at=now,
        )
        self._session.add(visit)
        await self._session.flush()
        if visit.follow_up:
            await casework.open_follow_up(self._session, household_id=record.household_id,
                                          source="visit", source_id=visit.id, text=visit.needs,
                                          now=now, fallback_owner_id=me.id)
        await self.audit("write", "visit", visit.id, record.household_id)
        paced: int | None = None
        if record.outcome == VisitOutcome.DECLINED:
            household = await self._session.get(Household, record.household_id)
            assert household is not None
            paced = casework.pace_down(household, now, self.services.casework)
            await self.audit("write", "household", record.household_id, record.household_id,
                             "paced_down")
        return VisitSaved(visit.id, paced)

    async def record_reading(self, *, household_id: int, member_id: int | None,
                             reading: readings.Reading, advice: str | None,
                             alert_text: str) -> ReadingSaved:
        """Save a reading; one in the danger range alerts whoever must hear of it, at once
        (`alert_text`, worded by the dialog, says what was measured)."""
        me = self._me()
        now = self.now()
        reasons = readings.danger_reasons(reading, self.services.thresholds)
        row = HealthReading(
            household_id=household_id, member_id=member_id, volunteer_id=me.id, measured_at=now,
            systolic=reading.systolic, diastolic=reading.diastolic, pulse=reading.pulse,
            glucose_mmol=reading.glucose, glucose_context=reading.glucose_context,
            advice=advice or None, danger=bool(reasons), danger_reasons=",".join(reasons) or None,
            recorded_at=now,
        )
        self._session.add(row)
        await self._session.flush()
        await self.audit("write", "reading", row.id, household_id)
        if reasons:
            household = await self._session.get(Household, household_id)
            assert household is not None
            for person in await alert_recipients(self._session, household.township_id):
                await self.notify(person.id, Reply(alert_text), kind="alert",
                                  key=f"alert:reading:{row.id}:{person.id}")
        return ReadingSaved(row.id, bool(reasons))

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

    # ------------------------------------------------------------------ activities

    def send_window(self) -> invitations.SendWindow:
        """When a family may be messaged (quiet hours, hard days): the pacing rule."""
        return invitations.SendWindow.of(self.services)

    async def townships(self) -> list[Township]:
        return list(await self._session.scalars(select(Township).order_by(Township.id)))

    async def township(self, township_id: int) -> Township | None:
        return await self._session.get(Township, township_id)

    async def audience_preview(self, audience: dict[str, Any],
                               activity_type: str | None) -> invitations.SendReport:
        """How many people an audience reaches, per channel; raises AudienceNotAllowed."""
        return await invitations.preview(self._session, self._me(), audience, activity_type)

    async def create_activity(self, *, activity_type: str, title: str, starts_at: datetime,
                              place: str | None, capacity: int | None, audience: dict[str, Any],
                              message: str | None, send_at: datetime | None) -> Activity:
        """A new activity in the organiser's scope: scheduled for `send_at`, or a draft to send
        now. Raises AudienceNotAllowed when the audience is out of scope."""
        me = self._me()
        checked = checked_audience(me, audience)
        activity = Activity(
            township_id=activity_township(me, checked), created_by_id=me.id,
            type=activity_type, title=title, starts_at=starts_at, place=place, capacity=capacity,
            audience=checked, message=message,
            status=invitations.Status.SCHEDULED if send_at else invitations.Status.DRAFT,
            send_at=send_at, created_at=self.now())
        self._session.add(activity)
        await self._session.flush()
        await self.audit("write", "activity", activity.id, None)
        return activity

    async def send_invitations(self, activity: Activity) -> invitations.SendReport:
        return await invitations.send_invitations(self._session, activity, self.now(), self.send_window())

    async def activity(self, activity_id: int) -> Activity | None:
        """An activity the sender may manage (never by id alone)."""
        return await self._session.scalar(visible_activities(self._me()).where(Activity.id == activity_id))

    async def recent_activities(self, since: datetime, limit: int) -> list[Activity]:
        return list(await self._session.scalars(
            visible_activities(self._me()).where(Activity.starts_at >= since)
            .order_by(Activity.starts_at.desc()).limit(limit)))

    async def activity_counts(self, activity_id: int) -> dict[str, Counts] | None:
        rows = await self._session.execute(count_query([activity_id]))
        return fold_counts(rows.all()).get(activity_id)

    async def invited_count(self, activity_id: int) -> int:
        return int(await self._session.scalar(select(func.count()).select_from(Invitation).where(
            Invitation.activity_id == activity_id)) or 0)

    async def attendance_list(self, activity_id: int) -> list[tuple[Invitation, str]]:
        return await invitations.attendance_list(self._session, activity_id)

    async def mark_attendance(self, activity: Activity, present: set[int], listed: list[int]) -> int:
        came = await invitations.mark_attendance(self._session, activity, present, listed,
                                                 self._me().id, self.now(), self.services.timezone)
        await self.audit("write", "attendance", activity.id, None)
        return came

    async def cancel_activity(self, activity: Activity, reason: str | None) -> int:
        told = await invitations.cancel_activity(self._session, activity, self.now(),
                                                 self.send_window(), reason)
        await self.audit("write", "activity_cancel", activity.id, None)
        return told

    async def reschedule_activity(self, activity: Activity, starts_at: datetime) -> int:
        told = await invitations.reschedule_activity(self._session, activity, starts_at, self.now(),
                                                     self.send_window())
        await self.audit("write", "activity_reschedule", activity.id, None)
        return told

    async def open_invitations(self, limit: int) -> list[tuple[Invitation, Activity]]:
        """The sender's invitations to activities not yet begun, soonest first."""
        rows = await self._session.execute(
            select(Invitation, Activity).join(Activity, Activity.id == Invitation.activity_id)
            .where(Invitation.person_id == self._me().id, Activity.status == invitations.Status.SENT,
                   Activity.starts_at > self.now())
            .order_by(Activity.starts_at).limit(limit))
        return [(inv, act) for inv, act in rows.all()]

    async def my_invitation(self, invitation_id: int) -> tuple[Invitation, Activity] | None:
        """One of the sender's own invitations with its activity, else None."""
        invitation = await self._session.get(Invitation, invitation_id)
        if invitation is None or invitation.person_id != self._me().id:
            return None
        activity = await self._session.get(Activity, invitation.activity_id)
        assert activity is not None
        return invitation, activity

    async def record_rsvp(self, invitation_id: int, answer: str, channel: str) -> invitations.RsvpOutcome:
        """Record the sender's answer (capacity, waitlist); `channel` is where they answered."""
        outcome = await invitations.record_rsvp(self._session, invitation_id=invitation_id,
                                                person_id=self._me().id, answer=answer,
                                                now=self.now(), window=self.send_window())
        if outcome.invitation is not None and outcome.status not in {"not_found", "cancelled", "closed"}:
            if outcome.invitation.channel == UNROUTED:  # queued before they had an address
                outcome.invitation.channel = channel
            await self.audit("write", "rsvp", outcome.invitation.id, outcome.invitation.household_id,
                             detail=answer)
        return outcome

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

    def _visible_ids(self) -> Select[int]:
        return visible_households(self._me()).with_only_columns(Household.id)

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

    # ------------------------------------------------------------------ family outreach

    async def membership(self, person_id: int) -> tuple[HouseholdMember, Household] | None:
        return await outreach.membership(self._session, person_id)

    async def member_facts(self, person_id: int) -> dict[str, object]:
        return await outreach.member_facts(self._session, person_id)

    async def volunteer_of(self, household_id: int | None) -> Person | None:
        return await outreach.volunteer_of(self._session, household_id)

    async def current_consent(self, person_id: int) -> Consent | None:
        return await outreach.current_consent(self._session, person_id)

    async def consent(self, consent_id: int) -> Consent | None:
        return await self._session.get(Consent, consent_id)

    async def give_consent(self, *, person_id: int, household_id: int | None, channel: str,
                           wording_version: str, recorded_by_id: int | None = None) -> Consent:
        """A new consent: the member's own, or one a volunteer recorded face to face
        (`recorded_by_id`), which counts only once the member confirms it."""
        consent = Consent(person_id=person_id, household_id=household_id, channel=channel,
                          wording_version=wording_version, given_at=self.now(),
                          recorded_by_id=recorded_by_id)
        self._session.add(consent)
        await self._session.flush()
        return consent

    async def preference_of(self, person_id: int) -> Preference | None:
        return await outreach.preference_of(self._session, person_id)

    async def save_preference(self, person_id: int, now: datetime, **values: object) -> Preference:
        return await outreach.save_preference(self._session, person_id, now, **values)

    async def stop_all(self, person_id: int, now: datetime) -> bool:
        return await outreach.stop_all(self._session, person_id, now)

    async def may_answer(self, person_id: int) -> bool:
        return await outreach.may_answer(self._session, person_id)

    async def person(self, person_id: int | None) -> Person | None:
        return await self._session.get(Person, person_id) if person_id else None

    async def family_members(self, household_id: int) -> list[tuple[HouseholdMember, Person]]:
        """The living family members of a household who are registered and active."""
        rows = await self._session.execute(
            select(HouseholdMember, Person).join(Person, Person.id == HouseholdMember.person_id)
            .where(HouseholdMember.household_id == household_id, HouseholdMember.alive.is_(True),
                   Person.role == Role.FAMILY, Person.active.is_(True))
            .order_by(HouseholdMember.id))
        return [(m, p) for m, p in rows.all()]

    async def channels_of(self, person_id: int) -> list[str]:
        """The channels a person can be reached on (not blocked), sorted."""
        rows = await self._session.scalars(select(ChannelAddress.channel).where(
            ChannelAddress.person_id == person_id, ChannelAddress.blocked_at.is_(None)))
        return sorted(set(rows))

    # ------------------------------------------------------------------ the family's line back

    async def receive_family_words(self, *, text: str, wants_call: bool, call_reason: str,
                                   channel: str) -> family_line.Received:
        """Keep what the sender (a family member) wrote; the caller forwards it."""
        me = self._me()
        found = await outreach.membership(self._session, me.id)
        member, household = found if found else (None, None)
        return await family_line.receive(self._session, person=me, member=member,
                                         household=household, channel=channel, text=text,
                                         wants_call=wants_call, call_reason=call_reason,
                                         now=self.now())

    def _scope_ids(self) -> Select[int]:
        return visible_households(self._me()).with_only_columns(Household.id)

    async def family_message(self, message_id: int) -> FamilyMessage | None:
        """A family's message to a household the sender may see, else None."""
        return await self._session.scalar(select(FamilyMessage).where(
            FamilyMessage.id == message_id, FamilyMessage.household_id.in_(self._scope_ids())))

    async def waiting_family_messages(self, limit: int) -> list[tuple[FamilyMessage, str]]:
        """Unanswered messages of the sender's households (escalated first), with the writer's name."""
        rows = await self._session.execute(
            select(FamilyMessage, Person.name).join(Person, Person.id == FamilyMessage.person_id)
            .where(FamilyMessage.answered_at.is_(None), FamilyMessage.household_id.in_(self._scope_ids()))
            .order_by(FamilyMessage.escalated_at.is_(None), FamilyMessage.received_at).limit(limit))
        return [(m, name) for m, name in rows.all()]

    async def writer_of(self, message: FamilyMessage) -> tuple[Person, HouseholdMember | None]:
        person = await self._session.get(Person, message.person_id)
        assert person is not None
        member = await self._session.scalar(select(HouseholdMember).where(
            HouseholdMember.person_id == person.id, HouseholdMember.household_id == message.household_id))
        return person, member

    async def family_thread(self, message: FamilyMessage) -> list[FamilyMessage]:
        """The message and the writer's other unanswered ones, newest first."""
        return list(await self._session.scalars(
            select(FamilyMessage).where(FamilyMessage.person_id == message.person_id,
                                        FamilyMessage.household_id == message.household_id,
                                        (FamilyMessage.answered_at.is_(None)) | (FamilyMessage.id == message.id))
            .order_by(FamilyMessage.received_at.desc()).limit(family_line.THREAD)))

    async def reply_to_family(self, message: FamilyMessage, person_id: int, text: str) -> bool:
        """Queue a written reply to the family (never in quiet hours); False if it cannot go."""
        now = self.now()
        if not await outreach.may_answer(self._session, person_id):
            return False
        row = await outreach.queue_to_family(
            self._session, person_id=person_id, kind="family_reply", text=text,
            key=f"family_reply:{message.id}:{now.timestamp():.6f}", now=now,
            not_before=self.send_window().family_time(now))
        return row is not None

    async def record_family_answer(self, message: FamilyMessage, mode: str) -> None:
        person, member = await self.writer_of(message)
        await family_line.record_answer(self._session, message=message, person=person,
                                        member=member, by=self._me(), mode=mode,
                                        today=self.services.today(), now=self.now())

    # ------------------------------------------------------------------ joining

    async def check_invite(self, *, channel: str, address: str, text: str,
                           looks_like_code: bool) -> enrolment.CodeCheck:
        """Check a typed invite code (a wrong one is counted against the address)."""
        return await enrolment.check_code(
            self._session, channel=channel, address=address, text=text, now=self.now(),
            window=self.services.invite_failure_window,
            max_failures=self.services.invite_max_failures, looks_like_code=looks_like_code)

    async def invite(self, invite_id: int) -> InviteCode | None:
        return await self._session.get(InviteCode, invite_id)

    async def staff_by_phone(self, digits: str) -> Person | None:
        """An active volunteer, coordinator or admin with this phone number."""
        person = await self._session.scalar(select(Person).where(Person.phone == digits,
                                                                 Person.active.is_(True)))
        return None if person is None or person.role == Role.FAMILY else person

    async def registered_family(self, household_id: int) -> list[tuple[HouseholdMember, Person]]:
        return await enrolment.registered_family(self._session, household_id)

    async def new_person(self, *, name: str, role: str, township_id: int | None,
                         household_id: int | None = None, relation: str | None = None) -> Person | None:
        """Someone new; with `household_id`, a new member of that (not erased) household."""
        if household_id is not None:
            household = await self._session.get(Household, household_id)
            if household is None or household.erased_at is not None:
                return None
            township_id = household.township_id
        person = Person(name=name, role=role, township_id=township_id, created_at=self.now())
        self._session.add(person)
        await self._session.flush()
        if household_id is not None:
            self._session.add(HouseholdMember(household_id=household_id, person_id=person.id,
                                              relation=relation or "other"))
        return person

    async def join(self, person: Person, channel: str, address: str,
                   invite: InviteCode | None = None) -> None:
        """Bind the address to `person` (and use up the invite); the step now acts as them."""
        now = self.now()
        await enrolment.link_address(self._session, person, channel, address, now)
        if invite is not None:
            invite.used_at = now
            invite.used_by_id = person.id
        self.actor = person

    # ------------------------------------------------------------------ the web console

    async def console_link(self, ttl: timedelta) -> tuple[str, str] | None:
        """A single-use sign-in link token and code for the sender, or None if they may not."""
        return await issue_link(self._session, self._me(), self.now(), ttl)

    # ------------------------------------------------------------------ reports

    async def chat_report(self, period: str | None) -> tuple[str, Attachment | None]:
        """The sender's scope summed up for chat (text and a chart); raises ValueError for a
        period the reports cannot read. The reports service is wired in by `bot/`."""
        reports = self.services.reports
        assert reports is not None
        return await reports.for_person(self._session, self._me(), self.now(), period=period)

    # ------------------------------------------------------------------ messages and audit

    async def notify(self, person_id: int, reply: Reply, *, kind: str, key: str,
                     expires_at: datetime | None = None) -> OutboxMessage | None:
        """Queue a message to a person through the outbox, once per key."""
        return await queue_message(self._session, person_id=person_id, reply=reply, kind=kind,
                                   key=key, now=self.now(), expires_at=expires_at)

    async def audit(self, action: str, entity: str, entity_id: int | None,
                    household_id: int | None, detail: str | None = None) -> None:
        await record_audit(self._session, actor_id=self.actor.id if self.actor else None,
                           action=action, entity=entity, entity_id=entity_id,
                           household_id=household_id, detail=detail, at=self.now())
