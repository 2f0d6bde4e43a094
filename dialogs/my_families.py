"""我的家庭 — the households I look after, when each was last contacted, and quick actions."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from dialogs.common import ChoosesHousehold
from dialogs.engine.dialog import Answer, Finish, Invalid, action_value
from dialogs.engine.types import Option, Reply
from storage.models import HealthReading, Household
from storage.queries import (
    contact_volunteer,
    household_for,
    household_labels,
    households_for,
    last_contact,
    members_of,
)


class MyFamilies(ChoosesHousehold):
    name = "families"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/family", "/families", "我的家庭", "家庭", "families")
    states = ["household", "card"]
    transitions = [{"trigger": "next", "source": "household", "dest": "card"}]

    async def ask_household(self) -> Reply | str | Finish:
        if self.data.get("household_id"):
            return "next"
        households = await households_for(self.ctx.session, self._person())
        if not households:
            return Finish.with_text(self.ctx.t("common.no_households"))
        labels = await household_labels(self.ctx.session, households[:40])
        last = await last_contact(self.ctx.session, [h.id for h in households[:40]])
        today = self.ctx.services.today()
        lines = [self.t("list_title", n=len(households))]
        options = []
        for h in households[:40]:
            seen = last.get(h.id)
            when = self.t("never") if seen is None else self.t("days_ago", d=(today - seen).days, date=seen.isoformat())
            options.append(Option(f"{labels[h.id]} · {when}", str(h.id)))
        lines.append(self.t("pick"))
        return Reply("\n".join(lines), tuple(options))

    async def ask_card(self) -> Reply:
        household = await household_for(self.ctx.session, self._person(), int(self.data["household_id"]))
        assert household is not None  # on_household checked the scope
        await self.ctx.audit("read", "household_card", household.id, household.id)
        return Reply(await self.card(household), (
            Option(self.ctx.t("visit.title"), action_value("visit", household_id=household.id)),
            Option(self.ctx.t("reading.title"), action_value("reading", household_id=household.id)),
        ))

    async def on_card(self, answer: Answer) -> Invalid:
        return Invalid(self.ctx.t("engine.invalid_choice"))

    async def card(self, household: Household) -> str:
        session = self.ctx.session
        today = self.ctx.services.today()
        label = (await household_labels(session, [household]))[household.id]
        lines = [self.t("card_title", label=label)]
        for member, person in await members_of(session, household.id):
            age = _age(member.birth_date, today)
            relation = self.t(f"rel_{member.relation}") if member.relation in {"father", "mother", "grandchild"} else member.relation
            lines.append(self.t("member", name=person.name, relation=relation,
                                age=self.t("age", n=age) if age is not None else ""))
        last = (await last_contact(session, [household.id])).get(household.id)
        lines.append(self.t("last_contact", v=last.isoformat() if last else self.t("never")))
        reading = await session.scalar(
            select(HealthReading).where(HealthReading.household_id == household.id, HealthReading.systolic.is_not(None))
            .order_by(HealthReading.measured_at.desc()).limit(1))
        if reading is not None:
            lines.append(self.t("last_bp", s=reading.systolic, d=reading.diastolic,
                                date=self.ctx.services.local(reading.measured_at).date().isoformat()))
        volunteer = await contact_volunteer(session, household.id)
        if volunteer is not None:
            lines.append(self.t("contact", name=volunteer.name))
        if household.visit_preference != "accepts":
            lines.append(self.t(f"pref_{household.visit_preference}"))
        lines.append(self.t("actions"))
        return "\n".join(lines)


def _age(born: date | None, today: date) -> int | None:
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
