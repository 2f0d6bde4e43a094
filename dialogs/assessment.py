"""评估 — an assessment of how a parent (or the family) is coping, kept as a history.

    household → member → grief_trauma → healing → acceptance → future_attitude
              → current_problems → problems_to_solve → confirm --save--> a new Assessment row
    confirm --edit--> grief_trauma (answers kept as defaults are simply asked again)

Every scale is 1–5 with a one-line anchor per point (catalogue `assessment.<scale>_<n>`), so
two volunteers rate the same family the same way. Grief trauma counts up (5 = deepest); the
other three count up toward the better (5 = best). An assessment is never overwritten: the
confirm step and the family card show it beside the previous one for the same person. A
rating at the worst end of grief or of the future opens a follow-up and tells the township
coordinator at once, because the plan asks for timely professional intervention.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from dialogs.common import ChoosesHousehold, HouseholdForm
from dialogs.engine.context import StepContext
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.recording import Records
from dialogs.engine.types import Option, Reply
from domain.assessments import DIRECTION, SCALES, is_urgent
from domain.casebook import AssessmentRecord
from storage.models import Assessment

TEXTS = ("current_problems", "problems_to_solve")
STATES = ["household", "member", *SCALES, *TEXTS, "confirm"]
MAX_TEXT = 2000
WHOLE_FAMILY = "family"


def compare_lines(ctx: StepContext, now: dict[str, int], before: Assessment | None) -> list[str]:
    """'Grief 4 → 3 (easing)' per scale, or the scores alone when there is nothing to compare."""
    lines = []
    for scale in SCALES:
        name = ctx.t(f"assessment.name_{scale}")
        if before is None:
            lines.append(ctx.t("assessment.score", name=name, v=now[scale]))
            continue
        old = int(getattr(before, scale))
        change = (now[scale] - old) * DIRECTION[scale]
        word = ctx.t("assessment.same" if change == 0 else "assessment.better" if change > 0 else "assessment.worse")
        lines.append(ctx.t("assessment.change", name=name, old=old, new=now[scale], word=word))
    return lines


@dataclass
class AssessmentForm(HouseholdForm):
    member_id: int | None = None
    member_name: str | None = None
    grief_trauma: int | None = None
    healing: int | None = None
    acceptance: int | None = None
    future_attitude: int | None = None
    current_problems: str | None = None
    problems_to_solve: str | None = None


class AssessmentDialog(ChoosesHousehold, Records):
    name = "assessment"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/assess", "评估", "assessment")
    in_menu = False  # reached from a family's card
    states = STATES
    transitions = [
        *({"trigger": "next", "source": a, "dest": b} for a, b in pairwise(STATES)),
        {"trigger": "edit", "source": "confirm", "dest": "grief_trauma"},
    ]
    form_type = AssessmentForm
    form: AssessmentForm

    def _household_id(self) -> int:
        assert self.form.household_id is not None  # the first question
        return self.form.household_id

    # member
    async def ask_member(self) -> Reply | str:
        members = await self.ctx.book.member_names(self._household_id())
        elders = [m for m in members if m.relation in {"father", "mother"}]
        if len(elders) <= 1:
            if elders:
                self.form.member_id, self.form.member_name = elders[0].id, elders[0].name
            return "next"
        return Reply(self.t("ask_member"), (*(Option(m.name, str(m.id)) for m in elders),
                                            Option(self.t("whole_family"), WHOLE_FAMILY)))

    async def on_member(self, answer: Answer) -> str | Invalid:
        if answer.value == WHOLE_FAMILY:
            self.form.member_id, self.form.member_name = None, self.t("whole_family")
            return "next"
        for member in await self.ctx.book.member_names(self._household_id()):
            if answer.value == str(member.id):
                self.form.member_id, self.form.member_name = member.id, member.name
                return "next"
        return Invalid(self.ctx.t("engine.invalid_choice"))

    # the four scales
    def _scale_question(self, scale: str) -> Reply:
        # the anchors are the options' labels, so the number typed is the score
        return Reply(self.t(f"ask_{scale}"), tuple(Option(self.t(f"{scale}_{n}"), str(n)) for n in range(1, 6)))

    def _scale_answer(self, scale: str, answer: Answer) -> str | Invalid:
        value = answer.value if answer.value in {"1", "2", "3", "4", "5"} else None
        if value is None:
            return Invalid(self.t("bad_score"))
        setattr(self.form, scale, int(value))
        return "next"

    async def ask_grief_trauma(self) -> Reply:
        return self._scale_question("grief_trauma")

    async def on_grief_trauma(self, answer: Answer) -> str | Invalid:
        return self._scale_answer("grief_trauma", answer)

    async def ask_healing(self) -> Reply:
        return self._scale_question("healing")

    async def on_healing(self, answer: Answer) -> str | Invalid:
        return self._scale_answer("healing", answer)

    async def ask_acceptance(self) -> Reply:
        return self._scale_question("acceptance")

    async def on_acceptance(self, answer: Answer) -> str | Invalid:
        return self._scale_answer("acceptance", answer)

    async def ask_future_attitude(self) -> Reply:
        return self._scale_question("future_attitude")

    async def on_future_attitude(self, answer: Answer) -> str | Invalid:
        return self._scale_answer("future_attitude", answer)

    # the two texts
    def _text_question(self, key: str) -> Reply:
        return Reply(self.t(f"ask_{key}"), (Option(self.ctx.t("engine.none"), ""),))

    def _text_answer(self, key: str, answer: Answer) -> str | Invalid:
        text = "" if answer.value == "" or answer.text in {"无", "没有", "none"} else answer.clean.strip()
        if len(text) > MAX_TEXT:
            return Invalid(self.t("too_long", limit=MAX_TEXT))
        setattr(self.form, key, text)
        return "next"

    async def ask_current_problems(self) -> Reply:
        return self._text_question("current_problems")

    async def on_current_problems(self, answer: Answer) -> str | Invalid:
        return self._text_answer("current_problems", answer)

    async def ask_problems_to_solve(self) -> Reply:
        return self._text_question("problems_to_solve")

    async def on_problems_to_solve(self, answer: Answer) -> str | Invalid:
        return self._text_answer("problems_to_solve", answer)

    # confirm
    def _scores(self) -> dict[str, int]:
        return {s: int(getattr(self.form, s)) for s in SCALES}

    async def summary(self) -> str:
        f = self.form
        before = await self.ctx.book.previous_assessment(self._household_id(), f.member_id)
        lines = [self.t("summary_title", label=f.household_label, who=f.member_name or "")]
        if before is not None:
            lines.append(self.t("compared_with", date=before.assessed_on.isoformat()))
        lines.extend(compare_lines(self.ctx, self._scores(), before))
        none = self.ctx.t("engine.none")
        lines.append(self.t("s_current_problems", v=f.current_problems or none))
        lines.append(self.t("s_problems_to_solve", v=f.problems_to_solve or none))
        if is_urgent(self._scores()):
            lines.append(self.t("urgent_note"))
        return "\n".join(lines)

    async def save(self) -> Finish:
        f = self.form
        urgent = await self.ctx.book.record_assessment(
            AssessmentRecord(household_id=self._household_id(), member_id=f.member_id,
                             scores=self._scores(), current_problems=f.current_problems,
                             problems_to_solve=f.problems_to_solve),
            follow_up_text=self.t("urgent_followup"),
            alert_text=self.t("urgent_alert", household=f.household_label, who=f.member_name or "",
                              volunteer=self._person().name))
        return Finish.with_text(self.t("saved_urgent" if urgent else "saved"))
