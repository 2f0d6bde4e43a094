"""The dialogs' `DueTasks` service backed by the planner (the family card shows these)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.care.planner import plan_async
from bot.care.policy import Policy
from bot.care.wording import task_title
from dialogs.services import TaskView


class PlannerTasks:
    """One household's planned tasks at an instant, as the dialogs' TaskView."""

    def __init__(self, policy: Policy, tz: ZoneInfo) -> None:
        self.policy = policy
        self.tz = tz

    async def for_household(self, session: AsyncSession, household_id: int,
                            at: datetime) -> list[TaskView]:
        tasks = await plan_async(session, at, self.policy, household_ids=[household_id], tz=self.tz)
        return [TaskView(kind=t.kind, title=task_title(t), due=t.due, status=t.status,
                         household_id=household_id, member_name=t.member_name) for t in tasks]
