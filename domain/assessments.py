"""Assessments of how a parent (or the family) is coping: a history, and the rule for urgency.

A rating at the worst end of grief or of hope for the future calls for professional help now:
saving one opens a follow-up and tells the township's coordinators at once (the casebook's
`record_assessment`). An assessment is never overwritten; the previous one of the same person
is what the next is compared with.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Assessment

SCALES = ("grief_trauma", "healing", "acceptance", "future_attitude")
# +1 when a higher number is better, -1 when a higher number is worse
DIRECTION = {"grief_trauma": -1, "healing": 1, "acceptance": 1, "future_attitude": 1}


def is_urgent(scores: Mapping[str, int]) -> bool:
    """The worst point of grief or of hope for the future calls for professional help now."""
    return scores.get("grief_trauma") == 5 or scores.get("future_attitude") == 1


async def previous_assessment(session: AsyncSession, household_id: int, member_id: int | None,
                              before_id: int | None = None) -> Assessment | None:
    """The latest assessment of the same person (or the family as a whole), optionally older
    than a given one."""
    query = select(Assessment).where(
        Assessment.household_id == household_id,
        Assessment.member_id.is_(None) if member_id is None else Assessment.member_id == member_id)
    if before_id is not None:
        query = query.where(Assessment.id < before_id)
    return await session.scalar(query.order_by(Assessment.assessed_on.desc(), Assessment.id.desc()).limit(1))
