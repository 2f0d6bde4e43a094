"""Activity invitations: sending, answers with capacity and a waitlist, reminders and notices.

Shared by the activity dialogs (create, manage, rsvp) and by the scheduler's jobs in
`bot/care/activities.py`, so every rule about an invitation is written once. Every message goes
through the outbox with an idempotency key (`invite:<activity>:<person>`, …), so a job that runs
twice, or runs again after a restart, never sends twice; the delivery worker applies each
channel's rate limits. Recipients always read Chinese.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain import catalog
from domain.messages import (
    UNROUTED,
    Option,
    Reply,
    ToQueue,
    action_value,
    addresses_of,
    enqueue_many,
    queue_message,
)
from domain.services import HardDays, Services
from storage.audience import AudienceNotAllowed, resolve_audience
from storage.models import Activity, Invitation, Person, Visit, VisitKind

# The program's themed activities (PROGRAM.md); "custom" is any other.
ACTIVITY_TYPES = ("green_handover", "mothers_day_letter", "fathers_day_letter", "members_day",
                  "mooncake", "new_years_eve_dinner", "interest_class", "smartphone_class",
                  "health_day")
CUSTOM = "custom"
ANSWERS = ("yes", "no", "maybe")
# an attended activity counts as the household's contact for this occasion (holiday greetings)
OCCASION_OF_TYPE = {"mothers_day_letter": "mothers_day", "fathers_day_letter": "fathers_day",
                    "members_day": "members_day", "mooncake": "mid_autumn",
                    "new_years_eve_dinner": "new_years_eve"}
OUTBOUND_LOCALE = "zh"
WEEKDAYS = "一二三四五六日"
HOLD_DAYS = 7  # how far ahead hard days are looked up when holding a family message


class Status:
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENT = "sent"
    CANCELLED = "cancelled"
    # A scheduled send that could not go out (the activity had begun, or its creator may no
    # longer reach the audience) goes back to DRAFT: reports and the planner count draft and
    # cancelled activities as not held, and the organiser is told why.


@dataclass
class SendWindow:
    """When messages may reach a family: not in quiet hours, not on the household's hard days.

    Call `load` with the households about to be messaged (it reads their hard days once), then
    `not_before` per message. Staff messages go at once.
    """

    timezone: ZoneInfo
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    hard_days: HardDays | None = None
    held: dict[int, set[date]] = field(default_factory=dict)

    @classmethod
    def of(cls, services: Services) -> SendWindow:
        start, end = services.quiet_hours
        return cls(services.timezone, start, end, services.hard_days)

    async def load(self, session: AsyncSession, household_ids: Iterable[int | None],
                   now: datetime) -> None:
        ids = sorted({i for i in household_ids if i is not None})
        if self.hard_days is None or not ids:
            return
        today = now.astimezone(self.timezone).date()
        self.held = await self.hard_days.of(session, ids, today, today + timedelta(days=HOLD_DAYS))

    def family_time(self, now: datetime) -> datetime:
        """The earliest moment a message may reach a family: now, or the end of quiet hours."""
        local = now.astimezone(self.timezone)
        t = local.time()
        if self.quiet_start > self.quiet_end:
            quiet = t >= self.quiet_start or t < self.quiet_end
        else:
            quiet = self.quiet_start <= t < self.quiet_end
        if not quiet:
            return now
        day = local.date() if t < self.quiet_end else local.date() + timedelta(days=1)
        return datetime.combine(day, self.quiet_end, self.timezone).astimezone(UTC)

    def not_before(self, household_id: int | None, now: datetime) -> datetime:
        if household_id is None:
            return now
        at = self.family_time(now)
        hard = self.held.get(household_id, set())
        while at.astimezone(self.timezone).date() in hard:  # the morning after the hard day
            day = at.astimezone(self.timezone).date() + timedelta(days=1)
            at = datetime.combine(day, self.quiet_end, self.timezone).astimezone(UTC)
        return at


def _t(key: str, **values: object) -> str:
    return catalog.t(f"activity.{key}", OUTBOUND_LOCALE, **values)


def type_name(activity_type: str, locale: str = OUTBOUND_LOCALE) -> str:
    if activity_type in ACTIVITY_TYPES:
        return catalog.t(f"activity.type_{activity_type}", locale)
    return catalog.t("activity.type_custom", locale)


def when_text(at: datetime, tz: ZoneInfo) -> str:
    """'11月25日（周三）14:30' — how a date and time read in a message."""
    local = at.astimezone(tz)
    return f"{local.month}月{local.day}日（周{WEEKDAYS[local.weekday()]}）{local:%H:%M}"


def describe(activity: Activity, tz: ZoneInfo, locale: str = OUTBOUND_LOCALE) -> str:
    """The activity's title, time, place and places, one per line."""
    def t(key: str, **v: object) -> str:
        return catalog.t(f"activity.{key}", locale, **v)

    lines = [t("d_title", v=activity.title), t("d_when", v=when_text(activity.starts_at, tz))]
    if activity.place:
        lines.append(t("d_place", v=activity.place))
    if activity.capacity:
        lines.append(t("d_capacity", v=activity.capacity))
    return "\n".join(lines)


def rsvp_options(invitation_id: int) -> tuple[Option, ...]:
    return tuple(Option(_t(f"answer_{a}"), action_value("rsvp", invitation_id=invitation_id, answer=a))
                 for a in ANSWERS)


def invitation_reply(activity: Activity, invitation_id: int, tz: ZoneInfo) -> Reply:
    body = [_t("invite_head"), describe(activity, tz)]
    if activity.message:
        body.append(activity.message)
    body.append(_t("invite_ask"))
    return Reply("\n".join(body), rsvp_options(invitation_id))


# ----------------------------------------------------------------------- sending


@dataclass
class SendReport:
    invited: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


async def preview(session: AsyncSession, creator: Person, audience: dict[str, object],
                  activity_type: str | None) -> SendReport:
    """How many people an audience reaches, per channel ("none" = no address: call them)."""
    report = SendReport()
    recipients = await resolve_audience(session, creator, dict(audience), activity_type)
    addresses = await addresses_of(session, [r.person_id for r in recipients])  # one query for all
    for r in recipients:
        channel = addresses[r.person_id][0] if r.person_id in addresses else UNROUTED
        report.invited += 1
        report.by_channel[channel] = report.by_channel.get(channel, 0) + 1
    return report


async def send_invitations(session: AsyncSession, activity: Activity, now: datetime,
                           window: SendWindow) -> SendReport:
    """Invite everyone the creator may reach in the activity's audience; once per person.

    The audience is resolved now, with the creator's current scope, so a family who opted out
    since the activity was drafted is left out. Raises AudienceNotAllowed if the creator may no
    longer reach it (nothing is written then).
    """
    creator = await session.get(Person, activity.created_by_id)
    assert creator is not None
    recipients = await resolve_audience(session, creator, dict(activity.audience), activity.type)
    already = set(await session.scalars(
        select(Invitation.person_id).where(Invitation.activity_id == activity.id)))
    report = SendReport()
    fresh = [r for r in recipients if r.person_id not in already]
    # A broadcast to a province: invitations and their messages written in bulk statements.
    ids = list(await session.scalars(insert(Invitation).returning(Invitation.id, sort_by_parameter_order=True), [
        {"activity_id": activity.id, "person_id": r.person_id, "household_id": r.household_id,
         "channel": UNROUTED, "created_at": now, "waitlisted": False} for r in fresh])) if fresh else []
    await window.load(session, (r.household_id for r in fresh), now)
    written = await enqueue_many(session, [
        ToQueue(r.person_id, invitation_reply(activity, invitation_id, window.timezone), "invitation",
                f"invite:{activity.id}:{r.person_id}", not_before=window.not_before(r.household_id, now),
                expires_at=activity.starts_at) for r, invitation_id in zip(fresh, ids, strict=True)], now)
    by_channel: dict[str, list[int]] = {}
    for r, invitation_id in zip(fresh, ids, strict=True):
        channel = written.get(f"invite:{activity.id}:{r.person_id}", UNROUTED)
        by_channel.setdefault(channel, []).append(invitation_id)
        report.invited += 1
        report.by_channel[channel] = report.by_channel.get(channel, 0) + 1
    for channel, chosen in by_channel.items():
        for i in range(0, len(chosen), 1000):
            if channel != UNROUTED:
                await session.execute(update(Invitation).where(Invitation.id.in_(chosen[i:i + 1000]))
                                      .values(channel=channel))
    activity.status = Status.SENT
    activity.sent_at = activity.sent_at or now
    return report


# ------------------------------------------------------------------------ answers


@dataclass(frozen=True)
class RsvpOutcome:
    """What happened to an answer: recorded | waitlisted | closed | cancelled | not_found."""

    status: str
    activity: Activity | None = None
    invitation: Invitation | None = None
    position: int | None = None  # place on the waitlist
    changed: bool = True


async def _lock_activity(session: AsyncSession, activity_id: int) -> Activity | None:
    """The activity, row-locked where the database can, so two answers cannot take one place."""
    query = select(Activity).where(Activity.id == activity_id)
    bind = session.bind
    if bind is not None and bind.dialect.name != "sqlite":
        query = query.with_for_update()
    return await session.scalar(query)


async def confirmed_count(session: AsyncSession, activity_id: int) -> int:
    return int(await session.scalar(select(func.count()).select_from(Invitation).where(
        Invitation.activity_id == activity_id, Invitation.rsvp == "yes",
        Invitation.waitlisted.is_(False))) or 0)


async def waitlist_position(session: AsyncSession, invitation: Invitation) -> int:
    ahead = await session.scalar(select(func.count()).select_from(Invitation).where(
        Invitation.activity_id == invitation.activity_id, Invitation.waitlisted.is_(True),
        Invitation.rsvp == "yes",
        (Invitation.rsvp_at < invitation.rsvp_at)
        | ((Invitation.rsvp_at == invitation.rsvp_at) & (Invitation.id < invitation.id))))
    return int(ahead or 0) + 1


async def record_rsvp(session: AsyncSession, *, invitation_id: int, person_id: int, answer: str,
                      now: datetime, window: SendWindow) -> RsvpOutcome:
    """Record (or change) an answer. Only the invited person may answer; only before the start.

    A yes beyond capacity joins the waitlist; a confirmed place given up goes to the first on
    the waitlist, who is told.
    """
    invitation = await session.get(Invitation, invitation_id)
    if invitation is None or invitation.person_id != person_id or answer not in ANSWERS:
        return RsvpOutcome("not_found")
    activity = await _lock_activity(session, invitation.activity_id)
    assert activity is not None
    if activity.status == Status.CANCELLED:
        return RsvpOutcome("cancelled", activity, invitation)
    if activity.starts_at <= now:
        return RsvpOutcome("closed", activity, invitation)
    if invitation.rsvp == answer:
        if invitation.waitlisted:
            return RsvpOutcome("waitlisted", activity, invitation,
                               await waitlist_position(session, invitation), changed=False)
        return RsvpOutcome("recorded", activity, invitation, changed=False)
    held_place = invitation.rsvp == "yes" and not invitation.waitlisted
    invitation.rsvp = answer
    invitation.rsvp_at = now
    invitation.waitlisted = False
    if answer == "yes" and activity.capacity is not None:
        await session.flush()
        if await confirmed_count(session, activity.id) > activity.capacity:
            invitation.waitlisted = True
            await session.flush()
            return RsvpOutcome("waitlisted", activity, invitation,
                               await waitlist_position(session, invitation))
    await session.flush()
    if held_place:
        await promote_waitlist(session, activity, now, window)
    return RsvpOutcome("recorded", activity, invitation)


async def promote_waitlist(session: AsyncSession, activity: Activity, now: datetime,
                           window: SendWindow) -> list[Invitation]:
    """Fill free places from the waitlist, first come first served, and tell each person."""
    if activity.capacity is None or activity.status != Status.SENT:
        return []
    free = activity.capacity - await confirmed_count(session, activity.id)
    if free <= 0:
        return []
    promoted = list(await session.scalars(
        select(Invitation).where(Invitation.activity_id == activity.id, Invitation.rsvp == "yes",
                                 Invitation.waitlisted.is_(True))
        .order_by(Invitation.rsvp_at, Invitation.id).limit(free)))
    await window.load(session, (i.household_id for i in promoted), now)
    for invitation in promoted:
        invitation.waitlisted = False
        invitation.promoted_at = now
        stamp = int((invitation.rsvp_at or now).timestamp())
        text = "\n".join([_t("promoted_head"), describe(activity, window.timezone), _t("promoted_tail")])
        await queue_message(session, person_id=invitation.person_id,
                            reply=Reply(text, rsvp_options(invitation.id)[1:]),
                            kind="invitation", key=f"promoted:{invitation.id}:{stamp}", now=now,
                            not_before=window.not_before(invitation.household_id, now),
                            expires_at=activity.starts_at)
    await session.flush()
    return promoted


# -------------------------------------------------------------- follow-through


async def _invitations(session: AsyncSession, activity_id: int) -> list[Invitation]:
    return list(await session.scalars(
        select(Invitation).where(Invitation.activity_id == activity_id).order_by(Invitation.id)))


async def cancel_activity(session: AsyncSession, activity: Activity, now: datetime,
                          window: SendWindow, reason: str | None = None) -> int:
    """Cancel, and tell everyone who was invited. Returns how many were told."""
    if activity.status == Status.CANCELLED:
        return 0
    was_sent = activity.status == Status.SENT
    activity.status = Status.CANCELLED
    activity.cancelled_at = now
    if not was_sent:
        return 0
    lines = [_t("cancel_head"), describe(activity, window.timezone)]
    if reason:
        lines.append(_t("cancel_reason", v=reason))
    lines.append(_t("cancel_tail"))
    told = 0
    invitations = await _invitations(session, activity.id)
    await window.load(session, (i.household_id for i in invitations), now)
    for invitation in invitations:
        row = await queue_message(
            session, person_id=invitation.person_id, reply=Reply("\n".join(lines)), kind="notice",
            key=f"cancel:{activity.id}:{invitation.person_id}", now=now,
            not_before=window.not_before(invitation.household_id, now),
            expires_at=activity.starts_at)
        told += row is not None
    return told


async def reschedule_activity(session: AsyncSession, activity: Activity, starts_at: datetime,
                              now: datetime, window: SendWindow) -> int:
    """Move the activity; everyone invited is told and may answer again (answers are kept)."""
    old = activity.starts_at
    activity.starts_at = starts_at
    activity.revision = (activity.revision or 0) + 1
    if activity.status != Status.SENT:
        return 0
    told = 0
    invitations = await _invitations(session, activity.id)
    await window.load(session, (i.household_id for i in invitations), now)
    for invitation in invitations:
        kept = _t(f"kept_{invitation.rsvp}") if invitation.rsvp else _t("kept_none")
        text = "\n".join([_t("reschedule_head", old=when_text(old, window.timezone)),
                          describe(activity, window.timezone), kept])
        row = await queue_message(
            session, person_id=invitation.person_id, reply=Reply(text, rsvp_options(invitation.id)),
            kind="notice", key=f"reschedule:{activity.id}:{invitation.person_id}:{activity.revision}",
            now=now, not_before=window.not_before(invitation.household_id, now),
            expires_at=starts_at)
        told += row is not None
    return told


def reminder_due(activity: Activity, tz: ZoneInfo, days_before: int, at: time) -> datetime:
    """When the reminder for an activity goes out: `days_before` days ahead, at local time `at`."""
    day = activity.starts_at.astimezone(tz).date() - timedelta(days=days_before)
    return datetime.combine(day, at, tz).astimezone(UTC)


async def remind_due(session: AsyncSession, now: datetime, window: SendWindow, *,
                     days_before: int, at: time) -> int:
    """Remind everyone holding a place in an activity whose reminder time has come.

    Someone who said yes after the reminder time already read the time and place in the
    confirmation, so they are not reminded again. Keys carry the activity's revision: after a
    reschedule the reminder goes out again for the new time.
    """
    horizon = now + timedelta(days=days_before + 1)
    activities = list(await session.scalars(select(Activity).where(
        Activity.status == Status.SENT, Activity.starts_at > now, Activity.starts_at <= horizon)))
    queued = 0
    for activity in activities:
        due = reminder_due(activity, window.timezone, days_before, at)
        if due > now:
            continue
        going = list(await session.scalars(select(Invitation).where(
            Invitation.activity_id == activity.id, Invitation.rsvp == "yes",
            Invitation.waitlisted.is_(False), Invitation.rsvp_at < due)))
        await window.load(session, (i.household_id for i in going), now)
        text = "\n".join([_t("reminder_head"), describe(activity, window.timezone), _t("reminder_tail")])
        for invitation in going:
            row = await queue_message(
                session, person_id=invitation.person_id,
                reply=Reply(text, (rsvp_options(invitation.id)[1],)), kind="reminder",
                key=f"activity-reminder:{activity.id}:{invitation.person_id}:{activity.revision}",
                now=now, not_before=window.not_before(invitation.household_id, now),
                expires_at=activity.starts_at)
            queued += row is not None
    return queued


async def send_due(session: AsyncSession, now: datetime, window: SendWindow) -> int:
    """Send the invitations of scheduled activities whose time has come; tell each organiser."""
    due = list(await session.scalars(select(Activity).where(
        Activity.status == Status.SCHEDULED, Activity.send_at <= now).order_by(Activity.send_at)))
    sent = 0
    for activity in due:
        if activity.starts_at <= now:
            activity.status = Status.DRAFT
            text = _t("lapsed", title=activity.title)
        else:
            try:  # the audience is checked before anything is written
                report = await send_invitations(session, activity, now, window)
            except AudienceNotAllowed:
                activity.status = Status.DRAFT
                text = _t("blocked", title=activity.title)
            else:
                sent += report.invited
                text = _t("scheduled_sent", title=activity.title, n=report.invited)
        await queue_message(session, person_id=activity.created_by_id, reply=Reply(text),
                            kind="notice", key=f"activity-sent:{activity.id}", now=now)
    return sent


# -------------------------------------------------------------------- attendance


def attendance_open(activity: Activity, now: datetime) -> bool:
    """Attendance is marked once invitations went out and the activity has begun."""
    return activity.status == Status.SENT and activity.starts_at <= now


async def attendance_list(session: AsyncSession, activity_id: int) -> list[tuple[Invitation, str]]:
    """Who might have come, with names: those who said yes (places first), then maybe."""
    rows = await session.execute(
        select(Invitation, Person.name).join(Person, Person.id == Invitation.person_id)
        .where(Invitation.activity_id == activity_id, Invitation.rsvp.in_(("yes", "maybe")))
        .order_by(Invitation.rsvp.desc(), Invitation.waitlisted, Invitation.id))
    return [(inv, name) for inv, name in rows.all()]


async def mark_attendance(session: AsyncSession, activity: Activity, present: set[int],
                          listed: list[int], marker_id: int, now: datetime, tz: ZoneInfo) -> int:
    """Mark who came among `listed` invitations; a family's attendance counts as a contact.

    Each attending household gets one visit of kind "activity" (with the activity's occasion),
    the record the planner and reports count; marking again corrects it, removing the visit of
    a household nobody from which came.
    """
    invitations = list(await session.scalars(
        select(Invitation).where(Invitation.activity_id == activity.id, Invitation.id.in_(listed))))
    for invitation in invitations:
        invitation.attended = invitation.id in present
    await session.flush()
    every = await _invitations(session, activity.id)
    by_household: dict[int, list[Invitation]] = {}
    for invitation in every:
        if invitation.household_id is not None:
            by_household.setdefault(invitation.household_id, []).append(invitation)
    day = activity.starts_at.astimezone(tz).date()
    for household_id, members in by_household.items():
        visit_id = next((m.visit_id for m in members if m.visit_id), None)
        came = any(m.attended for m in members)
        if came and visit_id is None:
            visit = Visit(household_id=household_id, volunteer_id=marker_id, visited_on=day,
                          kind=VisitKind.ACTIVITY, occasion=OCCASION_OF_TYPE.get(activity.type),
                          source="activity", recorded_at=now)
            session.add(visit)
            await session.flush()
            for m in members:
                m.visit_id = visit.id
        elif not came and visit_id is not None:
            for m in members:
                m.visit_id = None
            await session.flush()
            stale = await session.get(Visit, visit_id)
            if stale is not None:
                await session.delete(stale)
    activity.attendance_marked_at = now
    await session.flush()
    return sum(1 for i in invitations if i.attended)
