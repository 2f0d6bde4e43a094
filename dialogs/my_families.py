"""我的家庭 — the households I look after, and one household's summary card.

    household → card        (/family; 我的家庭 → pick one)

The card is what a volunteer needs before the next contact, and no more: who lives there and
their ages, when they were last called and visited, the last blood pressure and glucose with
the trend, the latest assessment beside the previous one, open needs, services, and what is
due next. The child's details stay in the file, not on the card. Who may open a card is the
scope rule in storage/scope.py (a volunteer: their own households; a coordinator: their
township); every opening is written to the audit log.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from dialogs.assessment import SCALES, compare_lines, previous_assessment
from dialogs.common import ChoosesHousehold
from dialogs.engine.dialog import Answer, Finish, Invalid, action_value
from dialogs.engine.types import Option, Reply
from domain.casework import needs_renewal_task, service_name
from storage.models import (
    Assessment,
    CaseFile,
    FollowUp,
    HealthReading,
    Household,
    ServiceEntitlement,
    ServiceStatus,
    Visit,
    VisitKind,
    VisitOutcome,
)
from storage.queries import (
    contact_volunteer,
    household_for,
    household_labels,
    households_for,
    last_contact,
    members_of,
)

MAX_LISTED = 40
CALLS = (VisitKind.PHONE, VisitKind.WECHAT)
BP_STEP = 5  # mmHg: smaller changes read as "steady"
GLUCOSE_STEP = 0.5  # mmol/L
SHOWN_TASKS = 3
SHOWN_FOLLOW_UPS = 2
PREVIEW = 30


class MyFamilies(ChoosesHousehold):
    name = "families"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/family", "/families", "我的家庭", "家庭", "families")
    states = ["household", "card"]
    transitions = [{"trigger": "next", "source": "household", "dest": "card"}]

    async def ask_household(self) -> Reply | str | Finish:
        if self.data.get("household_id"):
            if await household_for(self.ctx.session, self._person(), int(self.data["household_id"])):
                return "next"
            self.data.pop("household_id")  # not theirs (a forwarded button): show their own list
        households = await households_for(self.ctx.session, self._person())
        if not households:
            return Finish.with_text(self.ctx.t("common.no_households"))
        shown = households[:MAX_LISTED]
        labels = await household_labels(self.ctx.session, shown)
        last = await last_contact(self.ctx.session, [h.id for h in shown])
        today = self.ctx.services.today()
        options = []
        for h in shown:
            seen = last.get(h.id)
            when = self.t("never") if seen is None else self.t("days_ago", d=(today - seen).days, date=seen.isoformat())
            options.append(Option(f"{labels[h.id]} · {when}", str(h.id)))
        return Reply("\n".join([self.t("list_title", n=len(households)), self.t("pick")]), tuple(options))

    async def ask_card(self) -> Reply | Finish:
        household = await household_for(self.ctx.session, self._person(), int(self.data["household_id"]))
        if household is None:  # scope changed between the two steps
            return Finish.with_text(self.ctx.t("engine.not_allowed"))
        await self.ctx.audit("read", "household_card", household.id, household.id)
        return Reply(await self.card(household), await self.actions(household))

    async def on_card(self, answer: Answer) -> Invalid:
        return Invalid(self.ctx.t("engine.invalid_choice"))

    async def actions(self, household: Household) -> tuple[Option, ...]:
        session, hid = self.ctx.session, household.id
        options = [Option(self.ctx.t("visit.title"), action_value("visit", household_id=hid)),
                   Option(self.ctx.t("reading.title"), action_value("reading", household_id=hid))]
        if await session.scalar(select(CaseFile.id).where(CaseFile.household_id == hid)) is None:
            options.append(Option(self.ctx.t("intake.title"), action_value("intake", household_id=hid)))
        options.append(Option(self.ctx.t("assessment.title"), action_value("assessment", household_id=hid)))
        options.append(Option(self.ctx.t("services.title"), action_value("services", household_id=hid)))
        return tuple(options)

    # ------------------------------------------------------------ the card, section by section

    async def card(self, household: Household) -> str:
        label = (await household_labels(self.ctx.session, [household]))[household.id]
        lines = [self.t("card_title", label=label)]
        lines += await self._members(household)
        lines += await self._contacts(household)
        lines += await self._readings(household)
        lines += await self._assessments(household)
        lines += await self._follow_ups(household)
        lines += await self._services(household)
        lines += await self._tasks(household)
        volunteer = await contact_volunteer(self.ctx.session, household.id)
        if volunteer is not None:
            lines.append(self.t("contact", name=volunteer.name))
        if household.visit_preference != "accepts":
            lines.append(self.t(f"pref_{household.visit_preference}", days=household.visit_pace_days or "—"))
        lines.append(self.t("actions"))
        return "\n".join(lines)

    async def _names(self, household: Household) -> dict[int, str]:
        return {m.id: p.name for m, p in await members_of(self.ctx.session, household.id)}

    async def _members(self, household: Household) -> list[str]:
        today = self.ctx.services.today()
        lines = []
        for member, person in await members_of(self.ctx.session, household.id):
            age = _age(member.birth_date, today)
            relation = self.t(f"rel_{member.relation}") if member.relation in {"father", "mother", "grandchild"} else member.relation
            lines.append(self.t("member", name=person.name, relation=relation,
                                age=self.t("age", n=age) if age is not None else ""))
        return lines

    async def _contacts(self, household: Household) -> list[str]:
        session, today = self.ctx.session, self.ctx.services.today()

        async def last(*kinds: str, outcome: str | None = VisitOutcome.DONE) -> date | None:
            query = select(func.max(Visit.visited_on)).where(Visit.household_id == household.id,
                                                             Visit.kind.in_(kinds))
            if outcome is not None:
                query = query.where(Visit.outcome == outcome)
            return await session.scalar(query)

        def when(day: date | None) -> str:
            return self.t("never_short") if day is None else self.t("on_day", date=day.isoformat(), d=(today - day).days)

        call, visit = await last(*CALLS), await last(VisitKind.HOME)
        lines = [self.t("contacts", call=when(call), visit=when(visit))]
        attempt = await session.scalar(
            select(Visit).where(Visit.household_id == household.id, Visit.outcome != VisitOutcome.DONE)
            .order_by(Visit.visited_on.desc(), Visit.id.desc()).limit(1))
        latest_done = max((d for d in (call, visit, await last(*VisitKind)) if d), default=None)
        if attempt is not None and (latest_done is None or attempt.visited_on >= latest_done):
            lines.append(self.t(f"last_{attempt.outcome}", date=attempt.visited_on.isoformat()))
        return lines

    async def _readings(self, household: Household) -> list[str]:
        session = self.ctx.session
        names = await self._names(household)
        lines = []
        for column, key in ((HealthReading.systolic, "bp"), (HealthReading.glucose_mmol, "glucose")):
            rows = list(await session.scalars(
                select(HealthReading).where(HealthReading.household_id == household.id, column.is_not(None))
                .order_by(HealthReading.measured_at.desc()).limit(8)))
            by_member: dict[int | None, list[HealthReading]] = {}
            for row in rows:
                by_member.setdefault(row.member_id, []).append(row)
            for member_id, readings in list(by_member.items())[:3]:
                latest, before = readings[0], (readings[1] if len(readings) > 1 else None)
                who = names.get(member_id or -1, "")
                day = self.ctx.services.local(latest.measured_at).strftime("%m-%d")
                if key == "bp":
                    value = f"{latest.systolic}/{latest.diastolic}"
                    trend = _trend(latest.systolic, before.systolic if before else None, BP_STEP)
                    previous = f"{before.systolic}/{before.diastolic}" if before else ""
                else:
                    value = f"{latest.glucose_mmol:g}"
                    trend = _trend(latest.glucose_mmol, before.glucose_mmol if before else None, GLUCOSE_STEP)
                    previous = f"{before.glucose_mmol:g}" if before and before.glucose_mmol is not None else ""
                text = self.t(f"last_{key}", who=who, v=value, date=day)
                if trend is not None:
                    text += self.t(f"trend_{trend}", prev=previous)
                lines.append(text)
        return lines

    async def _assessments(self, household: Household) -> list[str]:
        session = self.ctx.session
        latest_ids = select(func.max(Assessment.id)).where(Assessment.household_id == household.id) \
            .group_by(Assessment.member_id)
        rows = list(await session.scalars(select(Assessment).where(Assessment.id.in_(latest_ids))
                                          .order_by(Assessment.assessed_on.desc()).limit(3)))
        names = await self._names(household)
        lines = []
        for row in rows:
            before = await previous_assessment(session, household.id, row.member_id, before_id=row.id)
            who = names.get(row.member_id or -1, self.ctx.t("assessment.whole_family"))
            head = self.t("assessment", who=who, date=row.assessed_on.isoformat())
            if before is not None:
                head += self.t("assessment_vs", date=before.assessed_on.isoformat())
            scores = {s: int(getattr(row, s)) for s in SCALES}
            lines.append(head + "\n" + "\n".join("  " + line for line in compare_lines(self.ctx, scores, before)))
        return lines

    async def _follow_ups(self, household: Household) -> list[str]:
        rows = list(await self.ctx.session.scalars(
            select(FollowUp).where(FollowUp.household_id == household.id,
                                   FollowUp.status.in_(("open", "in_progress")))
            .order_by(FollowUp.created_at)))
        if not rows:
            return [self.t("no_needs")]
        lines = [self.t("needs", n=len(rows))]
        for row in rows[:SHOWN_FOLLOW_UPS]:
            text = (row.text or self.ctx.t(f"followups.source_{row.source}")).replace("\n", " ")
            lines.append("  · " + (text if len(text) <= PREVIEW else text[:PREVIEW] + "…"))
        return lines

    async def _services(self, household: Household) -> list[str]:
        rows = list(await self.ctx.session.scalars(
            select(ServiceEntitlement).where(ServiceEntitlement.household_id == household.id,
                                             ServiceEntitlement.status != ServiceStatus.NOT_NEEDED)
            .order_by(ServiceEntitlement.member_id, ServiceEntitlement.id)))
        if not rows:
            return [self.t("no_services")]
        names = await self._names(household)
        today, policy = self.ctx.services.today(), self.ctx.services.casework
        parts = []
        for row in rows:
            status = self.ctx.t(f"services.status_{row.status}")
            if row.expires_on and row.status in (ServiceStatus.ACTIVE, ServiceStatus.EXPIRED):
                status += self.ctx.t("services.until" if row.status == ServiceStatus.ACTIVE else "services.since",
                                     date=row.expires_on.isoformat())
            warn = "⚠" if needs_renewal_task(row, today, policy) else ""
            who = names.get(row.member_id or -1, "")
            parts.append(f"  · {who}{service_name(row.service, self.ctx.locale)}：{status}{warn}")
        return [self.t("services"), *parts]

    async def _tasks(self, household: Household) -> list[str]:
        tasks = await self.ctx.services.tasks.for_household(self.ctx.session, household.id, self.ctx.now())
        upcoming = sorted((t for t in tasks if t.status in {"overdue", "due", "upcoming"}), key=lambda t: t.due)
        if not upcoming:
            return []
        lines = [self.t("next_tasks")]
        for task in upcoming[:SHOWN_TASKS]:
            lines.append(self.t("task", title=task.title, due=task.due.isoformat(),
                                status=self.t(f"task_{task.status}")))
        return lines


def _trend(new: float | None, old: float | None, step: float) -> str | None:
    if new is None or old is None:
        return None
    if new - old >= step:
        return "up"
    if old - new >= step:
        return "down"
    return "flat"


def _age(born: date | None, today: date) -> int | None:
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))

