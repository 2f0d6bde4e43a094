"""健康数据 — a health reading: blood pressure, pulse, blood glucose and the advice given.

    household → member → kind → bp → glucose → glucose_context → advice → confirm
States that the typed text already answered skip themselves (a volunteer may type
"135/85 血糖6.8" at the first question). A reading in the danger range alerts the township's
coordinators through the outbox in the same transaction as the reading (the casebook's
`record_reading`; who hears of it is domain/alerts.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from dialogs.common import ChoosesHousehold, HouseholdForm
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.recording import Records
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

STATES = ["household", "member", "kind", "bp", "glucose", "glucose_context", "advice", "confirm"]
VALUES = ("systolic", "diastolic", "pulse", "glucose", "glucose_context")


@dataclass
class ReadingForm(HouseholdForm):
    member_id: int | None = None
    member_name: str | None = None
    wants_bp: bool = False
    wants_glucose: bool = False
    systolic: int | None = None
    diastolic: int | None = None
    pulse: int | None = None
    glucose: float | None = None
    glucose_context: str | None = None
    advice: str | None = None


class HealthReadingDialog(ChoosesHousehold, Records):
    name = "reading"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/reading", "健康", "健康数据", "血压", "血糖", "reading")
    states = STATES
    transitions = [
        *({"trigger": "next", "source": a, "dest": b} for a, b in pairwise(STATES)),
        {"trigger": "edit", "source": "confirm", "dest": "kind"},
    ]
    form_type = ReadingForm
    form: ReadingForm

    def _reading(self) -> Reading:
        return Reading(**{k: getattr(self.form, k) for k in VALUES})

    def _store(self, reading: Reading) -> None:
        for key in VALUES:
            value = getattr(reading, key)
            if value is not None:
                setattr(self.form, key, value)

    def _household_id(self) -> int:
        assert self.form.household_id is not None  # the first question
        return self.form.household_id

    # member
    async def ask_member(self) -> Reply | str:
        members = await self.ctx.book.member_names(self._household_id())
        elders = [m for m in members if m.relation in {"father", "mother"}] or members
        if len(elders) <= 1:
            if elders:
                self.form.member_id, self.form.member_name = elders[0].id, elders[0].name
            return "next"
        return Reply(self.t("ask_member"), tuple(Option(m.name, str(m.id)) for m in elders))

    async def on_member(self, answer: Answer) -> str | Invalid:
        for member in await self.ctx.book.member_names(self._household_id()):
            if answer.value == str(member.id) or answer.text == member.name:
                self.form.member_id, self.form.member_name = member.id, member.name
                return "next"
        return Invalid(self.ctx.t("engine.invalid_choice"))

    # kind
    async def ask_kind(self) -> Reply:
        for key in VALUES:
            setattr(self.form, key, None)
        return Reply(self.t("ask_kind"), (Option(self.t("kind_bp"), "bp"), Option(self.t("kind_glucose"), "glucose"),
                                          Option(self.t("kind_both"), "both")))

    async def on_kind(self, answer: Answer) -> str | Invalid:
        if answer.value in {"bp", "glucose", "both"}:
            self.form.wants_bp = answer.value in {"bp", "both"}
            self.form.wants_glucose = answer.value in {"glucose", "both"}
            return "next"
        reading = parse_reading(answer.text)
        if reading.empty:
            return Invalid(self.t("bad_kind"))
        problem = self._check(reading)
        if problem:
            return Invalid(problem)
        self._store(reading)
        self.form.wants_bp = reading.has_bp
        self.form.wants_glucose = reading.glucose is not None
        return "next"

    def _check(self, reading: Reading) -> str | None:
        problems = implausible(reading, self.ctx.services.thresholds)
        return self.t(f"implausible_{problems[0]}") if problems else None

    # blood pressure
    async def ask_bp(self) -> Reply | str:
        if not self.form.wants_bp or self.form.systolic:
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
        if not self.form.wants_glucose or self.form.glucose is not None:
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
        if self.form.glucose is None or self.form.glucose_context:
            return "next"
        return Reply(self.t("ask_context"), tuple(Option(self.t(f"ctx_{k}"), k) for k in GLUCOSE_CONTEXTS))

    async def on_glucose_context(self, answer: Answer) -> str | Invalid:
        value = answer.value if answer.value in GLUCOSE_CONTEXTS else parse_glucose(answer.text).glucose_context
        if value is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.glucose_context = value
        return "next"

    # advice
    async def ask_advice(self) -> Reply:
        return Reply(self.t("ask_advice"), (Option(self.ctx.t("engine.none"), ""),))

    async def on_advice(self, answer: Answer) -> str | Invalid:
        text = "" if answer.value == "" or answer.text in {"无", "没有", "none"} else answer.clean
        if len(text) > 1000:
            return Invalid(self.t("too_long"))
        self.form.advice = text
        return "next"

    # confirm
    def summary(self) -> str:
        f = self.form
        lines = [self.t("summary_title"), self.t("s_household", v=f.household_label)]
        if f.member_name:
            lines.append(self.t("s_member", v=f.member_name))
        if f.systolic:
            lines.append(self.t("s_bp", s=f.systolic, d=f.diastolic))
        if f.pulse:
            lines.append(self.t("s_pulse", v=f.pulse))
        if f.glucose is not None:
            lines.append(self.t("s_glucose", v=f.glucose, ctx=self.t(f"ctx_{f.glucose_context or 'random'}")))
        lines.append(self.t("s_advice", v=f.advice or self.ctx.t("engine.none")))
        reasons = danger_reasons(self._reading(), self.ctx.services.thresholds)
        if reasons:
            lines.append(self.t("s_danger"))
        return "\n".join(lines)

    async def save(self) -> Finish:
        reading = self._reading()
        if reading.empty:
            return Finish.with_text(self.t("nothing"))
        saved = await self.ctx.book.record_reading(
            household_id=self._household_id(), member_id=self.form.member_id, reading=reading,
            advice=self.form.advice or None, alert_text=self._alert_text(reading))
        return Finish.with_text(self.t("saved_danger" if saved.danger else "saved"))

    def _alert_text(self, reading: Reading) -> str:
        """What the township's coordinators read when the reading is dangerous."""
        assert self.ctx.person is not None
        values = []
        if reading.systolic:
            values.append(self.t("s_bp", s=reading.systolic, d=reading.diastolic))
        if reading.glucose is not None:
            values.append(self.t("s_glucose", v=reading.glucose, ctx=self.t(f"ctx_{reading.glucose_context or 'random'}")))
        return self.t("alert", household=self.form.household_label, member=self.form.member_name or "",
                      values="；".join(values), volunteer=self.ctx.person.name,
                      at=self.ctx.services.local(self.ctx.now()).strftime("%m-%d %H:%M"))
