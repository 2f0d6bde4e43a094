"""Activities as a step sees them: creating, sending, managing and answering invitations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from domain import invitations
from domain.casebook.base import BookBase
from domain.messages import UNROUTED
from storage.activity_stats import Counts, count_query, fold_counts, visible_activities
from storage.audience import activity_township, checked_audience
from storage.models import Activity, Invitation, Township


class ActivityDesk(BookBase):
    """Activities: create, send, manage, attendance, cancel, reschedule, RSVP."""

    # ------------------------------------------------------------------ activities

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

