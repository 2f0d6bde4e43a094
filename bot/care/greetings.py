"""Greetings: one quiet message to each family member who asked for it, on the day, never late.

`greetings_job(app, at)` is the scheduler's entry point (bot/care/scheduler.py). Each tick it
1. notes the outcome of greetings already queued: a delivered one becomes a contact (a Visit of
   kind "message", source "greeting", on the day it was delivered), so the planner's holiday
   task is done and reports count it; an expired or failed one is marked so, and stays a task
   for the volunteer (a person, not a machine, makes up for it);
2. from `[outreach] greeting_time` (09:00) until the day's cut-off, queues today's greetings.

Who gets one, on which day:
- only a member with a consent in force (a consent recorded in person only once they confirmed
  it), who has not said 退订, and who opted into this kind: festivals (`[outreach] festivals`,
  default the program's holiday list), their own birthday, Mother's Day (mothers) and Father's
  Day (fathers) — each asked separately;
- never on that household's hard days: 清明, and the anniversaries of a child's death and birth;
- never twice: one Greeting per (member, occasion, Gregorian year) — a unique key — and the outbox
  idempotency key `greeting:<member>:<occasion>:<year>`. An occasion that falls twice in one
  calendar year (腊八 in 2022) is greeted on the first;
- never in quiet hours and never days late: the outbox row is due no earlier than the end of
  quiet hours and expires at the start of that evening's quiet hours (else at midnight), so the
  delivery worker expires it after an outage instead of sending it on a later day.

Why the contact is recorded on delivery, not when planned: a greeting that expired in an outage
reached nobody; counting it would hide the missed holiday from the volunteer's reminders.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from string import Formatter
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import quiet_hours
from bot.care.birthdays import Birthday, anniversaries_between, birthdays_between
from bot.care.calendar import dates_of, occurrences_between
from bot.care.occasions import NAMES
from bot.care.policy import Policy
from bot.config import ConfigError, Settings
from domain.invitations import SendWindow
from domain.outreach import address_of, queue_to_family
from storage.models import (
    Consent,
    ContactAssignment,
    DeceasedChild,
    Greeting,
    Household,
    HouseholdMember,
    OutboxMessage,
    OutboxStatus,
    Person,
    Preference,
    Role,
    Visit,
    VisitKind,
    VisitOutcome,
)

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("warmline.greetings")

KIND = "greeting"
SOURCE = "greeting"
BIRTHDAY = "birthday"
MOTHERS_DAY = "mothers_day"
FATHERS_DAY = "fathers_day"
PLACEHOLDERS = frozenset({"address", "volunteer", "occasion"})
PLANNED, SENT = "planned", "sent"


@dataclass(frozen=True)
class GreetingSettings:
    """`[outreach]` as the greeting job needs it, checked once."""

    send_time: time
    festivals: tuple[str, ...]
    templates: dict[str, str]
    signature_fallback: str
    timezone: ZoneInfo
    quiet: tuple[time, time]

    @classmethod
    def from_settings(cls, settings: Settings) -> GreetingSettings:
        section = settings.section("outreach")
        try:
            send_time = time.fromisoformat(str(section.get("greeting_time", "09:00")))
        except ValueError as exc:
            raise ConfigError(f"outreach.greeting_time: {exc}") from exc
        festivals = tuple(str(k) for k in section.get("festivals") or Policy.from_settings(settings).holiday_occasions)
        unknown = [k for k in festivals if k not in NAMES]
        if unknown:
            raise ConfigError(f"outreach.festivals: unknown occasion {unknown[0]!r}")
        separate = [k for k in festivals if k in (MOTHERS_DAY, FATHERS_DAY, "qingming")]
        if separate:  # these days can hurt: asked on their own (or never greeted), not as a festival
            raise ConfigError(f"outreach.festivals must not list {separate[0]!r}")
        templates = {str(k): str(v) for k, v in (section.get("templates") or {}).items()}
        for required in ("default", "footer"):
            if required not in templates:
                raise ConfigError(f"outreach.templates.{required} is missing")
        for key, text in templates.items():
            names = {name for _t, name, _f, _c in Formatter().parse(text) if name}
            if not names <= PLACEHOLDERS:
                raise ConfigError(f"outreach.templates.{key}: unknown placeholder {sorted(names - PLACEHOLDERS)[0]!r}")
        return cls(send_time, festivals, templates, str(section.get("signature_fallback", "县计生协")),
                   settings.timezone, quiet_hours(settings))

    def text(self, occasion: str, *, address: str, volunteer: str) -> str:
        """The greeting for one occasion: its own line (or the default), then the footer."""
        name = NAMES.get(occasion) or ("生日" if occasion == BIRTHDAY else occasion)
        values = {"address": address, "volunteer": volunteer, "occasion": name}
        body = self.templates.get(occasion, self.templates["default"]).format(**values)
        return f"{body}\n{self.templates['footer'].format(**values)}"

    def window(self, day: date) -> tuple[datetime, datetime, datetime]:
        """(opens, not_before, expires) of one day's greetings, as aware instants.

        Opens at the greeting time; due no earlier than the end of quiet hours; expires when the
        next quiet hours begin that day, else at midnight.
        """
        tz = self.timezone
        opens = datetime.combine(day, self.send_time, tz)
        start, end = self.quiet
        not_before = SendWindow(tz, start, end).family_time(opens).astimezone(tz)
        midnight = datetime.combine(day + timedelta(days=1), time(0), tz)
        quiet_start = datetime.combine(day, start, tz)
        expires = quiet_start if not_before < quiet_start < midnight else midnight
        return opens, not_before, expires


@dataclass
class GreetingReport:
    """What one tick did: counts only, never names or words."""

    planned: int = 0
    already: int = 0
    hard_day: int = 0
    unreachable: int = 0
    delivered: int = 0
    expired: int = 0
    failed: int = 0
    occasions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    member: HouseholdMember
    person: Person
    preference: Preference


def key_of(person_id: int, occasion: str, year: int) -> str:
    return f"greeting:{person_id}:{occasion}:{year}"


def wanted_occasions(c: Candidate, festivals_today: list[str], day: date) -> list[str]:
    """The occasions today this member asked to be greeted on (a pure rule)."""
    pref, member = c.preference, c.member
    out = list(festivals_today) if pref.festivals else []
    if pref.mothers_day and member.relation == "mother" and day in dates_of(MOTHERS_DAY, day.year):
        out.append(MOTHERS_DAY)
    if pref.fathers_day and member.relation == "father" and day in dates_of(FATHERS_DAY, day.year):
        out.append(FATHERS_DAY)
    if pref.own_birthday:
        birthday = Birthday.of(member.birthday_calendar, member.birth_date, member.lunar_birth_month,
                               member.lunar_birth_day, member.lunar_birth_leap)
        if birthday is not None and birthdays_between(birthday, day, day):
            out.append(BIRTHDAY)
    return out


def is_hard_day(day: date, children: list[tuple[date | None, date | None]]) -> bool:
    """清明, or the anniversary of a child's death or birth: no greeting to that family."""
    if day in dates_of("qingming", day.year):
        return True
    return any(when is not None and anniversaries_between(when, day, day)
               for born, died in children for when in (born, died))


async def _candidates(session: AsyncSession) -> list[Candidate]:
    """Members who may be greeted at all: consent in force (confirmed), not stopped, alive,
    active, in a household that is not erased, and opted into at least one kind of greeting."""
    consent = exists().where(
        Consent.person_id == Person.id, Consent.withdrawn_at.is_(None),
        or_(Consent.recorded_by_id.is_(None), Consent.confirmed_at.is_not(None)))
    rows = await session.execute(
        select(HouseholdMember, Person, Preference)
        .join(Person, Person.id == HouseholdMember.person_id)
        .join(Preference, Preference.person_id == Person.id)
        .join(Household, Household.id == HouseholdMember.household_id)
        .where(Household.erased_at.is_(None), HouseholdMember.alive.is_(True), Person.active.is_(True),
               Person.role == Role.FAMILY, Preference.stopped_at.is_(None), consent,
               or_(Preference.festivals.is_(True), Preference.own_birthday.is_(True),
                   and_(Preference.mothers_day.is_(True), HouseholdMember.relation == "mother"),
                   and_(Preference.fathers_day.is_(True), HouseholdMember.relation == "father")))
        .order_by(HouseholdMember.household_id, HouseholdMember.id))
    seen: set[int] = set()
    out = []
    for member, person, preference in rows.all():
        if person.id not in seen:  # a person in two households is greeted once
            seen.add(person.id)
            out.append(Candidate(member, person, preference))
    return out


async def _volunteer_names(session: AsyncSession, household_ids: set[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    for hid, name in await session.execute(
        select(ContactAssignment.household_id, Person.name)
        .join(Person, Person.id == ContactAssignment.volunteer_id)
        .where(ContactAssignment.household_id.in_(household_ids), ContactAssignment.ended_on.is_(None),
               Person.active.is_(True))
        .order_by(ContactAssignment.started_on, ContactAssignment.id)):
        names[hid] = name  # the latest assignment wins
    return names


async def plan_greetings(session: AsyncSession, at: datetime, config: GreetingSettings) -> GreetingReport:
    """Queue every greeting due today at instant `at` (idempotent; see the module docstring)."""
    report = GreetingReport()
    today = at.astimezone(config.timezone).date()
    opens, not_before, expires = config.window(today)
    if at < opens or at >= expires:
        return report
    festivals_today = [o.key for o in occurrences_between(config.festivals, today, today)]
    report.occasions = list(festivals_today)
    candidates = await _candidates(session)
    wanted = {c.person.id: wanted_occasions(c, festivals_today, today) for c in candidates}
    candidates = [c for c in candidates if wanted[c.person.id]]
    if not candidates:
        return report
    household_ids = {c.member.household_id for c in candidates}
    children: dict[int, list[tuple[date | None, date | None]]] = defaultdict(list)
    for hid, born, died in await session.execute(
        select(DeceasedChild.household_id, DeceasedChild.birth_date, DeceasedChild.death_date)
        .where(DeceasedChild.household_id.in_(household_ids))):
        children[hid].append((born, died))
    existing = set((await session.execute(
        select(Greeting.member_person_id, Greeting.occasion).where(
            Greeting.year == today.year, Greeting.member_person_id.in_([c.person.id for c in candidates]))
    )).all())
    volunteers = await _volunteer_names(session, household_ids)
    for c in candidates:
        if is_hard_day(today, children[c.member.household_id]):
            report.hard_day += len(wanted[c.person.id])
            continue
        for occasion in wanted[c.person.id]:
            if (c.person.id, occasion) in existing:
                report.already += 1
                continue
            volunteer = volunteers.get(c.member.household_id, config.signature_fallback)
            address = address_of(c.member, c.person)
            text = config.text(occasion, address=address, volunteer=volunteer)
            # the parts too, for channels that carry only approved templates (SMS, WeChat's)
            row = await queue_to_family(session, person_id=c.person.id, text=text, kind=KIND,
                                        key=key_of(c.person.id, occasion, today.year), now=at,
                                        not_before=max(at, not_before), expires_at=expires,
                                        extra={"occasion": occasion, "address": address,
                                               "volunteer": volunteer})
            if row is None:  # nowhere to reach them now; a later tick today tries again
                report.unreachable += 1
                continue
            session.add(Greeting(household_id=c.member.household_id, member_person_id=c.person.id,
                                 occasion=occasion, year=today.year, channel=row.channel,
                                 outbox_id=row.id, status=PLANNED, created_at=at, occasion_on=today))
            report.planned += 1
    return report


OUTCOME_SLICE = 500  # greetings per round of statements (bound parameters stay well under the limits)


async def note_outcomes(session: AsyncSession, at: datetime, tz: ZoneInfo,
                        report: GreetingReport | None = None) -> GreetingReport:
    """Greetings whose outbox row reached an end: delivered ones become contacts (Visits).

    Set-based: a festival morning at a province delivers hundreds of thousands of greetings, and
    a query and a flush per greeting would be most of the tick. Per slice: one query for the
    outcomes (plain columns: the messages' encrypted bodies are not read), one for the members,
    one bulk INSERT of the visits (their ids returned in order) and one bulk UPDATE of the
    greetings."""
    report = report or GreetingReport()
    rows = (await session.execute(
        select(Greeting.id, Greeting.household_id, Greeting.member_person_id, Greeting.occasion,
               OutboxMessage.status, OutboxMessage.sent_at)
        .join(OutboxMessage, OutboxMessage.id == Greeting.outbox_id)
        .where(Greeting.status == PLANNED,
               OutboxMessage.status.in_((OutboxStatus.SENT, OutboxStatus.EXPIRED, OutboxStatus.FAILED)))
        .order_by(Greeting.id))).all()
    for i in range(0, len(rows), OUTCOME_SLICE):
        part = rows[i:i + OUTCOME_SLICE]
        ended = [{"id": gid, "status": status} for gid, _h, _p, _o, status, _s in part if status != OutboxStatus.SENT]
        report.expired += sum(1 for e in ended if e["status"] == OutboxStatus.EXPIRED)
        report.failed += sum(1 for e in ended if e["status"] == OutboxStatus.FAILED)
        sent = [row for row in part if row[4] == OutboxStatus.SENT]
        updates: list[dict[str, Any]] = list(ended)
        if sent:
            members: dict[tuple[int, int], int] = {}
            for mid, hid, pid in await session.execute(
                    select(HouseholdMember.id, HouseholdMember.household_id, HouseholdMember.person_id)
                    .where(HouseholdMember.household_id.in_({row[1] for row in sent}))
                    .order_by(HouseholdMember.id)):
                members.setdefault((hid, pid), mid)
            visits = [{"household_id": hid, "member_id": members.get((hid, pid)), "volunteer_id": None,
                       "visited_on": (sent_at or at).astimezone(tz).date(), "kind": VisitKind.MESSAGE,
                       "occasion": occasion, "outcome": VisitOutcome.DONE, "source": SOURCE, "recorded_at": at}
                      for _g, hid, pid, occasion, _st, sent_at in sent]
            ids = (await session.scalars(insert(Visit).returning(Visit.id, sort_by_parameter_order=True),
                                         visits)).all()
            updates += [{"id": row[0], "status": SENT, "visit_id": vid} for row, vid in zip(sent, ids, strict=True)]
            report.delivered += len(sent)
        if updates:  # by primary key, in bulk; keys per row differ, so one statement per shape
            for shape in ({"id", "status"}, {"id", "status", "visit_id"}):
                same = [u for u in updates if set(u) == shape]
                if same:
                    await session.execute(update(Greeting), same)
    return report


async def greetings_job(app: App, at: datetime) -> dict[str, Any]:
    """The scheduler's entry point: outcomes first, then today's greetings, in one transaction."""
    config = GreetingSettings.from_settings(app.settings)
    async with app.db.async_session() as session:
        outcomes = await note_outcomes(session, at, config.timezone)
        report = await plan_greetings(session, at, config)
    report.delivered, report.expired, report.failed = outcomes.delivered, outcomes.expired, outcomes.failed
    if report.planned or report.delivered or report.expired or report.failed:
        log.info("greetings planned=%d delivered=%d expired=%d failed=%d hard_day=%d unreachable=%d",
                 report.planned, report.delivered, report.expired, report.failed, report.hard_day,
                 report.unreachable)
    return {"planned": report.planned, "already": report.already, "hard_day": report.hard_day,
            "unreachable": report.unreachable, "delivered": report.delivered,
            "expired": report.expired, "failed": report.failed}
