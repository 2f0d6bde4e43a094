"""The whole file of one household, gathered for export, and its erasure on request.

`collect` reads everything Warmline holds about a household into plain data (for JSON or a
workbook). `erase` removes the household's personal data — names, phones, birthdays, the
children's details, every free-text note, what family members wrote, messages that named them
— and keeps only what the county's reports count without knowing who: visits' dates, kinds,
outcomes and money; reading values; assessment scores; service statuses and dates; the
township. The household is marked erased, so every scope query stops returning it.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime
from typing import Any

from sqlalchemy import CursorResult, Result, delete, or_, select, update
from sqlalchemy.orm import Session

from storage.audit import record_audit_sync
from storage.models import (
    ActionToken,
    Assessment,
    CaseFile,
    ChannelAddress,
    Consent,
    ContactAssignment,
    DeceasedChild,
    DialogSession,
    FamilyMessage,
    FollowUp,
    HealthReading,
    Household,
    HouseholdMember,
    IntakeDraft,
    OutboxMessage,
    Person,
    Preference,
    ServiceEntitlement,
    Task,
    Township,
    Village,
    Visit,
)
from storage.outbox import record_erased

ERASED_NAME = "（已删除）"
ERASED_TEXT = "（内容已按家庭要求删除）"


def _rows(result: Result[Any]) -> int:
    """How many rows a bulk DELETE or UPDATE touched (their results are cursor results)."""
    assert isinstance(result, CursorResult)
    return result.rowcount


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _row(obj: Any, *fields: str, **extra: Any) -> dict[str, Any]:
    out = {name: _plain(getattr(obj, name)) for name in fields}
    out.update({k: _plain(v) for k, v in extra.items()})
    return out


def collect(session: Session, household: Household) -> dict[str, Any]:
    """Every record about the household, members named, as JSON-ready data."""
    hid = household.id
    township = session.get(Township, household.township_id)
    village = session.get(Village, household.village_id) if household.village_id else None
    members = session.execute(select(HouseholdMember, Person).join(Person, Person.id == HouseholdMember.person_id)
                              .where(HouseholdMember.household_id == hid).order_by(HouseholdMember.id)).all()
    names = {m.id: p.name for m, p in members}
    people = {p.id: p.name for _m, p in members}
    staff = dict(session.execute(select(Person.id, Person.name).where(Person.role != "family")).all())

    def who(member_id: int | None) -> str | None:
        return names.get(member_id) if member_id is not None else None

    def by(person_id: int | None) -> str | None:
        return staff.get(person_id) if person_id is not None else None

    def rows(model: Any, order: Any) -> list[Any]:
        return list(session.scalars(select(model).where(model.household_id == hid).order_by(order)))

    file = session.scalar(select(CaseFile).where(CaseFile.household_id == hid))
    assignments = rows(ContactAssignment, ContactAssignment.started_on)
    return {
        "household": _row(household, "code", "hardship", "visit_preference", "visit_pace_days", "refused_at",
                          "created_at", township=township.name if township else None,
                          village=village.name if village else None),
        "contact_volunteers": [_row(a, "started_on", "ended_on", volunteer=by(a.volunteer_id)) for a in assignments],
        "members": [_row(m, "relation", "sex", "birth_date", "birthday_calendar", "lunar_birth_month",
                         "lunar_birth_day", "lunar_birth_leap", "form_of_address", "alive",
                         name=p.name, phone=p.phone) for m, p in members],
        "deceased_children": [_row(c, "name", "sex", "birth_date", "death_date", "death_cause")
                              for c in rows(DeceasedChild, DeceasedChild.id)],
        "case_file": None if file is None else _row(
            file, "economic_security", "biggest_difficulty", "needs", "elder_care_expectation",
            "accepts_visits", "visit_pace", "confirmed_at", "updated_at", recorded_by=by(file.recorded_by_id),
            member_notes={names.get(int(k), k) if str(k).isdigit() else k: v
                          for k, v in (file.member_notes or {}).items()}),
        "assessments": [_row(a, "assessed_on", "grief_trauma", "healing", "acceptance", "future_attitude",
                             "current_problems", "problems_to_solve", member=who(a.member_id),
                             volunteer=by(a.volunteer_id)) for a in rows(Assessment, Assessment.id)],
        "services": [_row(s, "service", "status", "applied_on", "starts_on", "expires_on", "note",
                          "updated_at", member=who(s.member_id)) for s in rows(ServiceEntitlement, ServiceEntitlement.id)],
        "visits": [_row(v, "visited_on", "kind", "occasion", "outcome", "physical_state", "mood", "needs",
                        "money_fen", "gifts", "follow_up", "source", member=who(v.member_id),
                        volunteer=by(v.volunteer_id)) for v in rows(Visit, Visit.visited_on)],
        "health_readings": [_row(r, "measured_at", "systolic", "diastolic", "pulse", "glucose_mmol",
                                 "glucose_context", "advice", "danger", "danger_reasons", member=who(r.member_id),
                                 volunteer=by(r.volunteer_id)) for r in rows(HealthReading, HealthReading.measured_at)],
        "follow_ups": [_row(f, "source", "text", "status", "created_at", "acted_at", "escalated_at",
                            owner=by(f.owner_id)) for f in rows(FollowUp, FollowUp.id)],
        "tasks": [_row(t, "kind", "reason", "due_at", "done_at", member=who(t.member_id),
                       assignee=by(t.assignee_id)) for t in rows(Task, Task.id)],
        "family_messages": [_row(m, "channel", "text", "received_at", "answered_at",
                                 sender=people.get(m.person_id)) for m in rows(FamilyMessage, FamilyMessage.id)],
    }


def _scrub_mentions(session: Session, words: list[str]) -> tuple[int, int]:
    """Messages and open conversations that name a member or child: blank them."""
    words = [w for w in words if w and len(w) >= 2]
    if not words:
        return 0, 0
    outbox = 0
    # Bodies are encrypted, so they are searched here after decryption, not in SQL; purged
    # bodies (NULL, see storage/outbox/recording.py, "bodies") are not even loaded.
    for message in session.scalars(select(OutboxMessage).where(OutboxMessage.payload.is_not(None))):
        if not any(w in json.dumps(message.payload, ensure_ascii=False) for w in words):
            continue
        record_erased(message, ERASED_TEXT)
        outbox += 1
    sessions = 0
    for row in session.scalars(select(DialogSession).where(DialogSession.dialog.is_not(None))):
        blob = json.dumps([row.data, row.prompt], ensure_ascii=False)
        if any(w in blob for w in words):
            row.dialog, row.state, row.data, row.prompt, row.expires_at = None, None, {}, None, None
            sessions += 1
    return outbox, sessions


def erase(session: Session, household: Household, now: datetime, *, actor_id: int | None = None) -> Counter[str]:
    """Remove the household's personal data; returns what was removed or blanked, by kind."""
    hid = household.id
    removed: Counter[str] = Counter()
    members = session.execute(select(HouseholdMember, Person).join(Person, Person.id == HouseholdMember.person_id)
                              .where(HouseholdMember.household_id == hid)).all()
    children = list(session.scalars(select(DeceasedChild).where(DeceasedChild.household_id == hid)))
    words = [p.name for _m, p in members] + [c.name or "" for c in children]
    person_ids = [p.id for _m, p in members if p.role == "family"]

    for member, person in members:
        member.birth_date = member.lunar_birth_month = member.lunar_birth_day = None
        member.form_of_address = None
        if person.role == "family":
            person.name, person.phone, person.skills = ERASED_NAME, None, None
            person.unreachable_reason, person.active = None, False
        removed["members"] += 1
    if person_ids:
        addresses = list(session.scalars(select(ChannelAddress).where(ChannelAddress.person_id.in_(person_ids))))
        for address in addresses:
            session.execute(delete(DialogSession).where(DialogSession.channel == address.channel,
                                                        DialogSession.address == address.address))
            session.execute(delete(ActionToken).where(ActionToken.channel == address.channel,
                                                      ActionToken.address == address.address))
            session.delete(address)
        removed["channel_addresses"] += len(addresses)
        removed["consents"] += _rows(session.execute(delete(Consent).where(Consent.person_id.in_(person_ids))))
        removed["preferences"] += _rows(session.execute(
            delete(Preference).where(Preference.person_id.in_(person_ids))))
    removed["deceased_children"] += len(children)
    for child in children:
        session.delete(child)
    removed["case_file"] += _rows(session.execute(delete(CaseFile).where(CaseFile.household_id == hid)))
    removed["intake_draft"] += _rows(session.execute(delete(IntakeDraft).where(IntakeDraft.household_id == hid)))

    def blank(model: Any, *columns: str) -> None:
        condition = or_(*(getattr(model, c).is_not(None) for c in columns))
        count = _rows(session.execute(update(model).where(model.household_id == hid, condition)
                                .values(**dict.fromkeys(columns))))
        removed[f"{model.__tablename__}_notes"] += count

    blank(Visit, "physical_state", "mood", "needs", "gifts")
    blank(HealthReading, "advice")
    blank(Assessment, "current_problems", "problems_to_solve")
    blank(ServiceEntitlement, "note")
    blank(FollowUp, "text")
    blank(Task, "reason")
    messages = list(session.scalars(select(FamilyMessage).where(FamilyMessage.household_id == hid)))
    for message in messages:
        message.text = ""
    removed["family_messages"] += len(messages)
    outbox, sessions = _scrub_mentions(session, words)
    removed["outbox_messages"] += outbox
    removed["open_conversations"] += sessions

    session.execute(update(ContactAssignment).where(ContactAssignment.household_id == hid,
                                                    ContactAssignment.ended_on.is_(None))
                    .values(ended_on=now.date()))
    household.code = f"erased-{hid}"
    household.village_id = None
    household.erased_at = now
    session.flush()
    record_audit_sync(session, actor_id=actor_id, action="erase", entity="household", entity_id=hid,
                      household_id=hid, detail=",".join(f"{k}={v}" for k, v in sorted(removed.items()) if v),
                      at=now)
    return Counter({k: v for k, v in removed.items() if v})
