"""健康数据 — a health reading: blood pressure, pulse, blood glucose and the advice given.

    household → member → kind → bp → glucose → glucose_context → advice → confirm
States that the typed text already answered skip themselves (a volunteer may type
"135/85 血糖6.8" at the first question). A reading in the danger range alerts the township's
coordinators through the outbox in the same transaction as the reading.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

from dialogs.common import ChoosesHousehold, ConfirmsBeforeSaving
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.types import Option, Reply
from dialogs.readings import (
    GLUCOSE_CONTEXTS,
    Reading,
    danger_reasons,
    implausible,
    parse_blood_pressure,
    parse_glucose,
    parse_reading,
)
from storage.models import HealthReading
from storage.queries import members_of, township_coordinators

STATES = ["household", "member", "kind", "bp", "glucose", "glucose_context", "advice", "confirm"]


class HealthReadingDialog(ChoosesHousehold, ConfirmsBeforeSaving):
    name = "reading"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/reading", "健康", "健康数据", "血压", "血糖", "reading")
    states = STATES
    transitions = [
        *({"trigger": "next", "source": a, "dest": b} for a, b in pairwise(STATES)),
        {"trigger": "edit", "source": "confirm", "dest": "kind"},
    ]

    def _reading(self) -> Reading:
        return Reading(**{k: self.data.get(k) for k in ("systolic", "diastolic", "pulse", "glucose", "glucose_context")})

    def _store(self, reading: Reading) -> None:
        for key, value in reading.__dict__.items():
            if value is not None:
                self.data[key] = value

    # member
    async def ask_member(self) -> Reply | str:
        members = await members_of(self.ctx.session, int(self.data["household_id"]))
        elders = [(m, p) for m, p in members if m.relation in {"father", "mother"}] or members
        if len(elders) <= 1:
            if elders:
                self.data["member_id"], self.data["member_name"] = elders[0][0].id, elders[0][1].name
            return "next"
        return Reply(self.t("ask_member"), tuple(Option(p.name, str(m.id)) for m, p in elders))

    async def on_member(self, answer: Answer) -> str | Invalid:
        members = await members_of(self.ctx.session, int(self.data["household_id"]))
        for member, person in members:
            if answer.value == str(member.id) or answer.text == person.name:
                self.data["member_id"], self.data["member_name"] = member.id, person.name
                return "next"
        return Invalid(self.ctx.t("engine.invalid_choice"))

    # kind
    async def ask_kind(self) -> Reply:
        for key in ("systolic", "diastolic", "pulse", "glucose", "glucose_context"):
            self.data.pop(key, None)
        return Reply(self.t("ask_kind"), (Option(self.t("kind_bp"), "bp"), Option(self.t("kind_glucose"), "glucose"),
                                          Option(self.t("kind_both"), "both")))

    async def on_kind(self, answer: Answer) -> str | Invalid:
        if answer.value in {"bp", "glucose", "both"}:
            self.data["wants_bp"] = answer.value in {"bp", "both"}
            self.data["wants_glucose"] = answer.value in {"glucose", "both"}
            return "next"
        reading = parse_reading(answer.text)
        if reading.empty:
            return Invalid(self.t("bad_kind"))
        problem = self._check(reading)
        if problem:
            return Invalid(problem)
        self._store(reading)
        self.data["wants_bp"] = reading.has_bp
        self.data["wants_glucose"] = reading.glucose is not None
        return "next"

    def _check(self, reading: Reading) -> str | None:
        problems = implausible(reading, self.ctx.services.thresholds)
        return self.t(f"implausible_{problems[0]}") if problems else None

    # blood pressure
    async def ask_bp(self) -> Reply | str:
        if not self.data.get("wants_bp") or self.data.get("systolic"):
            return "next"
        return Reply(self.t("ask_bp"))

    async def on_bp(self, answer: Answer) -> str | Invalid:
        reading = parse_blood_pressure(answer.text)
        if not reading.has_bp:
            return Invalid(self.t("bad_bp"))
        problem = self._check(reading)
        if problem:
            return Invalid(problem)
        self._store(reading)
        return "next"

    # glucose
    async def ask_glucose(self) -> Reply | str:
        if not self.data.get("wants_glucose") or self.data.get("glucose") is not None:
            return "next"
        return Reply(self.t("ask_glucose"))

    async def on_glucose(self, answer: Answer) -> str | Invalid:
        reading = parse_glucose(answer.text)
        if reading.glucose is None:
            return Invalid(self.t("bad_glucose"))
        problem = self._check(reading)
        if problem:
            return Invalid(problem)
        self._store(reading)
        return "next"

    async def ask_glucose_context(self) -> Reply | str:
        if self.data.get("glucose") is None or self.data.get("glucose_context"):
            return "next"
        return Reply(self.t("ask_context"), tuple(Option(self.t(f"ctx_{k}"), k) for k in GLUCOSE_CONTEXTS))

    async def on_glucose_context(self, answer: Answer) -> str | Invalid:
        value = answer.value if answer.value in GLUCOSE_CONTEXTS else parse_glucose(answer.text).glucose_context
        if value is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["glucose_context"] = value
        return "next"

    # advice
    async def ask_advice(self) -> Reply:
        return Reply(self.t("ask_advice"), (Option(self.ctx.t("engine.none"), ""),))

    async def on_advice(self, answer: Answer) -> str | Invalid:
        text = "" if answer.value == "" or answer.text in {"无", "没有", "none"} else answer.clean
        if len(text) > 1000:
            return Invalid(self.t("too_long"))
        self.data["advice"] = text
        return "next"

    # confirm
    def summary(self) -> str:
        d = self.data
        lines = [self.t("summary_title"), self.t("s_household", v=d.get("household_label", ""))]
        if d.get("member_name"):
            lines.append(self.t("s_member", v=d["member_name"]))
        if d.get("systolic"):
            lines.append(self.t("s_bp", s=d["systolic"], d=d["diastolic"]))
        if d.get("pulse"):
            lines.append(self.t("s_pulse", v=d["pulse"]))
        if d.get("glucose") is not None:
            lines.append(self.t("s_glucose", v=d["glucose"], ctx=self.t(f"ctx_{d.get('glucose_context') or 'random'}")))
        lines.append(self.t("s_advice", v=d.get("advice") or self.ctx.t("engine.none")))
        reasons = danger_reasons(self._reading(), self.ctx.services.thresholds)
        if reasons:
            lines.append(self.t("s_danger"))
        return "\n".join(lines)

    async def save(self) -> Finish:
        assert self.ctx.person is not None
        reading = self._reading()
        if reading.empty:
            return Finish.with_text(self.t("nothing"))
        reasons = danger_reasons(reading, self.ctx.services.thresholds)
        household_id = int(self.data["household_id"])
        now = self.ctx.now()
        row = HealthReading(
            household_id=household_id, member_id=self.data.get("member_id"), volunteer_id=self.ctx.person.id,
            measured_at=now, systolic=reading.systolic, diastolic=reading.diastolic, pulse=reading.pulse,
            glucose_mmol=reading.glucose, glucose_context=reading.glucose_context,
            advice=self.data.get("advice") or None, danger=bool(reasons),
            danger_reasons=",".join(reasons) or None, recorded_at=now,
        )
        self.ctx.session.add(row)
        await self.ctx.session.flush()
        await self.ctx.audit("write", "reading", row.id, household_id)
        if not reasons:
            return Finish.with_text(self.t("saved"))
        await self._alert(row, reasons, now)
        return Finish.with_text(self.t("saved_danger"))

    async def _alert(self, row: HealthReading, reasons: list[str], now: datetime) -> None:
        from storage.models import Household

        household = await self.ctx.session.get(Household, row.household_id)
        assert household is not None and self.ctx.person is not None
        values = []
        if row.systolic:
            values.append(self.t("s_bp", s=row.systolic, d=row.diastolic))
        if row.glucose_mmol is not None:
            values.append(self.t("s_glucose", v=row.glucose_mmol, ctx=self.t(f"ctx_{row.glucose_context or 'random'}")))
        text = self.t("alert", household=self.data.get("household_label", household.code),
                      member=self.data.get("member_name", ""), values="；".join(values),
                      volunteer=self.ctx.person.name,
                      at=self.ctx.services.local(now).strftime("%m-%d %H:%M"))
        for coordinator in await township_coordinators(self.ctx.session, household.township_id):
            await self.ctx.notify(coordinator.id, Reply(text), kind="alert",
                                  key=f"alert:reading:{row.id}:{coordinator.id}")
