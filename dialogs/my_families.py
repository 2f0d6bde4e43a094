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

from dataclasses import dataclass
from datetime import date

from dialogs.assessment import AssessmentDialog, compare_lines
from dialogs.common import ChoosesHousehold, HouseholdForm
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.types import Option, Reply
from dialogs.health_reading import HealthReadingDialog
from dialogs.intake import Intake
from dialogs.services_status import ServicesStatus
from dialogs.visit_report import VisitReport
from domain.assessments import SCALES
from domain.casework import needs_renewal_task, service_name
from domain.family_card import CardFacts
from storage.models import HealthReading, Household, ServiceStatus

MAX_LISTED = 40
BP_STEP = 5  # mmHg: smaller changes read as "steady"
GLUCOSE_STEP = 0.5  # mmol/L
SHOWN_TASKS = 3
SHOWN_FOLLOW_UPS = 2
PREVIEW = 30


@dataclass
class FamiliesForm(HouseholdForm):
    pass


REACH_KINDS = frozenset({"sms", "stopped", "pending", "unreachable", "wechat", "telegram", "wecom",
                         "console"})


class MyFamilies(ChoosesHousehold):
    name = "families"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/family", "/families", "我的家庭", "家庭", "families")
    states = ["household", "card"]
    transitions = [{"trigger": "next", "source": "household", "dest": "card"}]
    form_type = FamiliesForm
    form: FamiliesForm

    async def ask_household(self) -> Reply | str | Finish:
        book = self.ctx.book
        if self.form.household_id:
            if await book.household(self.form.household_id):
                return "next"
            self.form.household_id = None  # not theirs (a forwarded button): show their own list
        shown = await book.household_choices(MAX_LISTED)
        if not shown:
            return Finish.with_text(self.ctx.t("common.no_households"))
        total = len(shown) if len(shown) < MAX_LISTED else await book.household_count()
        last = await book.last_contact([h.id for h in shown])
        today = self.ctx.services.today()
        options = []
        for h in shown:
            seen = last.get(h.id)
            when = self.t("never") if seen is None else self.t("days_ago", d=(today - seen).days, date=seen.isoformat())
            options.append(Option(f"{h.label} · {when}", str(h.id)))
        return Reply("\n".join([self.t("list_title", n=total), self.t("pick")]), tuple(options))

    async def ask_card(self) -> Reply | Finish:
        household = await self.ctx.book.household(self.form.household_id or 0)
        if household is None:  # scope changed between the two steps
            return Finish.with_text(self.ctx.t("engine.not_allowed"))
        await self.ctx.audit("read", "household_card", household.id, household.id)
        facts = await self.ctx.book.card(household)
        return Reply(await self.card(household, facts), self.actions(household, facts))

    async def on_card(self, answer: Answer) -> Invalid:
        return Invalid(self.ctx.t("engine.invalid_choice"))

    def actions(self, household: Household, facts: CardFacts) -> tuple[Option, ...]:
        hid = household.id
        options = [Option(VisitReport.title_in(self.ctx), VisitReport.start_value(household_id=hid)),
                   Option(HealthReadingDialog.title_in(self.ctx), HealthReadingDialog.start_value(household_id=hid))]
        if not facts.has_case_file:
            options.append(Option(Intake.title_in(self.ctx), Intake.start_value(household_id=hid)))
        options.append(Option(AssessmentDialog.title_in(self.ctx), AssessmentDialog.start_value(household_id=hid)))
        options.append(Option(ServicesStatus.title_in(self.ctx), ServicesStatus.start_value(household_id=hid)))
        return tuple(options)

    # ------------------------------------------------------------ the card, section by section

    async def card(self, household: Household, facts: CardFacts | None = None) -> str:
        """The card's text (also the web console's card, which passes no facts)."""
        facts = facts or await self.ctx.book.card(household)
        label = await self.ctx.book.label(household)
        lines = [self.t("card_title", label=label)]
        lines += self._members(facts)
        lines += self._contacts(facts)
        lines += self._readings(facts)
        lines += self._assessments(facts)
        lines += self._follow_ups(facts)
        lines += self._services(facts)
        lines += await self._tasks(household)
        if facts.volunteer is not None:
            lines.append(self.t("contact", name=facts.volunteer.name))
        if household.visit_preference != "accepts":
            lines.append(self.t(f"pref_{household.visit_preference}", days=household.visit_pace_days or "—"))
        lines.append(self.t("actions"))
        return "\n".join(lines)

    def _members(self, facts: CardFacts) -> list[str]:
        today = self.ctx.services.today()
        lines = []
        for member, person in facts.members:
            age = _age(member.birth_date, today)
            relation = self.t(f"rel_{member.relation}") if member.relation in {"father", "mother", "grandchild"} else member.relation
            lines.append(self.t("member", name=person.name, relation=relation,
                                age=self.t("age", n=age) if age is not None else ""))
            how = facts.reach.get(person.id)
            if how is not None:
                kind, _, number = how.partition(":")
                shown = self.t(f"reach_{kind}", number=number[:3] + "****" + number[-4:]) \
                    if kind in REACH_KINDS else kind
                lines.append(self.t("reach", how=shown))
        return lines

    def _contacts(self, facts: CardFacts) -> list[str]:
        today = self.ctx.services.today()

        def when(day: date | None) -> str:
            return self.t("never_short") if day is None else self.t("on_day", date=day.isoformat(), d=(today - day).days)

        call, visit = facts.last_call, facts.last_home_visit
        lines = [self.t("contacts", call=when(call), visit=when(visit))]
        attempt = facts.last_attempt
        latest_done = max((d for d in (call, visit, facts.last_contact) if d), default=None)
        if attempt is not None and (latest_done is None or attempt.visited_on >= latest_done):
            lines.append(self.t(f"last_{attempt.outcome}", date=attempt.visited_on.isoformat()))
        return lines

    def _readings(self, facts: CardFacts) -> list[str]:
        names = facts.names
        lines = []
        for rows, key in ((facts.bp_readings, "bp"), (facts.glucose_readings, "glucose")):
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

    def _assessments(self, facts: CardFacts) -> list[str]:
        names = facts.names
        lines = []
        for row, before in facts.assessments:
            who = names.get(row.member_id or -1, self.ctx.t("assessment.whole_family"))
            head = self.t("assessment", who=who, date=row.assessed_on.isoformat())
            if before is not None:
                head += self.t("assessment_vs", date=before.assessed_on.isoformat())
            scores = {s: int(getattr(row, s)) for s in SCALES}
            lines.append(head + "\n" + "\n".join("  " + line for line in compare_lines(self.ctx, scores, before)))
        return lines

    def _follow_ups(self, facts: CardFacts) -> list[str]:
        rows = facts.open_follow_ups
        if not rows:
            return [self.t("no_needs")]
        lines = [self.t("needs", n=len(rows))]
        for row in rows[:SHOWN_FOLLOW_UPS]:
            text = (row.text or self.ctx.t(f"followups.source_{row.source}")).replace("\n", " ")
            lines.append("  · " + (text if len(text) <= PREVIEW else text[:PREVIEW] + "…"))
        return lines

    def _services(self, facts: CardFacts) -> list[str]:
        rows = facts.services
        if not rows:
            return [self.t("no_services")]
        names = facts.names
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
        tasks = await self.ctx.book.due_tasks(household.id)
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

