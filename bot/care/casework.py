"""Daily case-work jobs the scheduler runs: insurance renewals and follow-up escalation.

Both are idempotent (running twice plans nothing twice) and select only the rows that need
action with one query each, never a loop over every household.

- `plan_service_expiry`: an active (or lapsed) insurance whose expiry falls within
  `[casework] insurance_expiry_days` becomes a renewal task for the contact volunteer.
- `escalate_follow_ups`: a need or complaint nobody acted on within
  `[casework] follow_up_escalate_hours` goes to the township's coordinators through the outbox.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import App, casework_policy
from bot.config import Settings
from dialogs.engine import catalog
from dialogs.engine.types import Option, Reply
from dialogs.follow_ups import FollowUps
from domain.alerts import alert_recipients
from domain.casework import EXPIRY_TASK, sync_expiry_task
from domain.messages import queue_message
from storage.models import FollowUp, Household, ServiceEntitlement, Task
from storage.queries import contact_volunteer, household_labels

log = logging.getLogger("warmline.casework")

PREVIEW = 200


async def plan_service_expiry(session: AsyncSession, now: datetime, settings: Settings) -> int:
    """Create the renewal tasks that are due; returns how many were created."""
    policy, tz = casework_policy(settings), settings.timezone
    horizon = now.astimezone(tz).date() + timedelta(days=policy.insurance_expiry_days)
    candidates = list(await session.scalars(
        select(ServiceEntitlement)
        .join(Household, Household.id == ServiceEntitlement.household_id)
        .where(Household.erased_at.is_(None),
               ServiceEntitlement.service.in_(policy.insurance_services),
               ServiceEntitlement.status.in_(("active", "expired")),
               ServiceEntitlement.expires_on.is_not(None),
               ServiceEntitlement.expires_on <= horizon)))
    created = 0
    for entitlement in candidates:
        before = await session.scalar(select(Task.id).where(
            Task.key == f"service_expiry:{entitlement.id}:{entitlement.expires_on}"))
        task = await sync_expiry_task(session, entitlement, now=now, tz=tz, policy=policy)
        created += int(task is not None and before is None)
    if created:
        log.info("renewal tasks created count=%d kind=%s", created, EXPIRY_TASK)
    return created


async def escalate_follow_ups(session: AsyncSession, now: datetime, settings: Settings) -> int:
    """Tell the township coordinators about follow-ups left untouched; returns how many."""
    policy = casework_policy(settings)
    cutoff = now - timedelta(hours=policy.follow_up_escalate_hours)
    items = list(await session.scalars(
        select(FollowUp).join(Household, Household.id == FollowUp.household_id)
        .where(Household.erased_at.is_(None), FollowUp.status == "open", FollowUp.acted_at.is_(None),
               FollowUp.escalated_at.is_(None), FollowUp.created_at <= cutoff)
        .order_by(FollowUp.id)))
    for item in items:
        household = await session.get(Household, item.household_id)
        assert household is not None
        label = (await household_labels(session, [household]))[household.id]
        volunteer = await contact_volunteer(session, household.id)
        text = (item.text or catalog.t(f"followups.source_{item.source}"))[:PREVIEW]
        reply = Reply(catalog.t("followups.escalation", label=label, text=text,
                                hours=int(policy.follow_up_escalate_hours),
                                volunteer=volunteer.name if volunteer else "—"),
                      (Option(catalog.t("followups.escalation_open"),
                              FollowUps.start_value(follow_up_id=item.id)),))
        for coordinator in await alert_recipients(session, household.township_id):
            await queue_message(session, person_id=coordinator.id, reply=reply, kind="escalation",
                                key=f"followup_escalation:{item.id}:{coordinator.id}", now=now)
        item.escalated_at = now
    if items:
        log.info("follow-ups escalated count=%d", len(items))
    return len(items)


async def run_casework_jobs(session: AsyncSession, now: datetime, settings: Settings) -> dict[str, int]:
    """Both daily jobs in one call, for a scheduler that wants a single entry point."""
    return {"renewal_tasks": await plan_service_expiry(session, now, settings),
            "escalated": await escalate_follow_ups(session, now, settings)}


async def casework_job(app: App, at: datetime) -> dict[str, int]:
    """The scheduler's entry point (bot/care/scheduler.py JOBS): one transaction per tick."""
    async with app.db.async_session() as session:
        return await run_casework_jobs(session, at, app.settings)
