"""Case-work rules shared by the dialogs and the daily jobs: one place for each of them.

- which services a member can have (elders vs grandchildren) and which of them are insurance;
- an insurance that is about to run out becomes a task for the contact volunteer, exactly once
  per expiry date, and the task closes itself when the insurance is renewed or no longer needed;
- a need or complaint becomes a follow-up owned by the household's contact volunteer;
- a visit the family declined slows the household's contact rhythm down.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import catalog
from domain.services import CaseworkPolicy
from storage.models import (
    FollowUp,
    Household,
    ServiceEntitlement,
    ServiceStatus,
    Task,
    VisitPreference,
)
from storage.queries import contact_volunteer

ELDER_SERVICES = ("green_channel", "free_exam", "rebirth", "family_doctor",
                  "hospital_care_insurance", "accident_insurance", "pension_insurance")
GRANDCHILD_SERVICES = ("school_aid", "companionship", "child_health")
ALL_SERVICES = ELDER_SERVICES + GRANDCHILD_SERVICES
STATUSES = tuple(s.value for s in ServiceStatus)
EXPIRY_TASK = "insurance_renewal"
# statuses in which an insurance's expiry date still matters: running, or lapsed and not renewed
_EXPIRY_STATUSES = (ServiceStatus.ACTIVE.value, ServiceStatus.EXPIRED.value)


def services_for(relation: str | None) -> tuple[str, ...]:
    """The services tracked for a member: grandchildren have their own; the household level
    (no member) and the parents have the elders' list."""
    return GRANDCHILD_SERVICES if relation == "grandchild" else ELDER_SERVICES


def service_name(key: str, locale: str = catalog.DEFAULT_LOCALE) -> str:
    return catalog.t(f"services.svc_{key}", locale) if key in ALL_SERVICES else key


def expiry_key(entitlement: ServiceEntitlement) -> str:
    return f"service_expiry:{entitlement.id}:{entitlement.expires_on}"


def needs_renewal_task(entitlement: ServiceEntitlement, today: date, policy: CaseworkPolicy) -> bool:
    """True when an insurance runs out within the configured window (or already ran out)."""
    return (entitlement.service in policy.insurance_services
            and entitlement.status in _EXPIRY_STATUSES
            and entitlement.expires_on is not None
            and entitlement.expires_on <= today + timedelta(days=policy.insurance_expiry_days))


async def sync_expiry_task(session: AsyncSession, entitlement: ServiceEntitlement, *, now: datetime,
                           tz: ZoneInfo, policy: CaseworkPolicy) -> Task | None:
    """Make the renewal task this entitlement calls for, and close the ones it no longer needs.

    Idempotent: the task's key names the entitlement and its expiry date, so a saved dialog and
    the daily job together still make one task; a renewal (new date) closes the old one.
    """
    today = now.astimezone(tz).date()
    wanted = expiry_key(entitlement) if needs_renewal_task(entitlement, today, policy) else None
    open_tasks = await session.scalars(select(Task).where(
        Task.key.like(f"service_expiry:{entitlement.id}:%"), Task.done_at.is_(None)))
    for task in open_tasks:
        if task.key != wanted:
            task.done_at = now
    if wanted is None:
        return None
    existing = await session.scalar(select(Task).where(Task.key == wanted))
    if existing is not None:
        return existing
    assert entitlement.expires_on is not None
    volunteer = await contact_volunteer(session, entitlement.household_id)
    task = Task(
        household_id=entitlement.household_id, member_id=entitlement.member_id,
        assignee_id=volunteer.id if volunteer else None, kind=EXPIRY_TASK, key=wanted,
        reason=catalog.t("services.task_reason", service=service_name(entitlement.service),
                         date=entitlement.expires_on.isoformat()),
        due_at=datetime.combine(entitlement.expires_on, time(9), tz) - timedelta(days=1),
        created_at=now,
    )
    session.add(task)
    await session.flush()
    return task


async def open_follow_up(session: AsyncSession, *, household_id: int, source: str,
                         source_id: int | None, text: str | None, now: datetime,
                         fallback_owner_id: int | None) -> FollowUp:
    """A need or complaint, owned by the household's contact volunteer (else whoever recorded it)."""
    volunteer = await contact_volunteer(session, household_id)
    row = FollowUp(household_id=household_id, source=source, source_id=source_id, text=text,
                   owner_id=volunteer.id if volunteer else fallback_owner_id, created_at=now)
    session.add(row)
    await session.flush()
    return row


def pace_down(household: Household, now: datetime, policy: CaseworkPolicy) -> int:
    """A declined visit: contact less often (the pace doubles up to the maximum); returns days.

    A family that said at intake it refuses visits stays 'refused'; only the family's own word
    (an intake or a coordinator) turns a household back to 'accepts'.
    """
    household.refused_at = now
    current = household.visit_pace_days
    if household.visit_preference == VisitPreference.ACCEPTS or not current:
        pace = policy.declined_pace_days
    else:
        pace = min(current * 2, policy.max_pace_days)
    pace = max(pace, current or 0)
    if household.visit_preference != VisitPreference.REFUSED:
        household.visit_preference = VisitPreference.PACED
    household.visit_pace_days = pace
    return pace

