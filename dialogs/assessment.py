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

from itertools import pairwise

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.common import ChoosesHousehold
from dialogs.engine.context import StepContext
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.recording import Records
from dialogs.engine.types import Option, Reply
from domain.alerts import alert_recipients
from domain.casework import open_follow_up
from storage.models import Assessment, Household
from storage.queries import members_of

SCALES = ("grief_trauma", "healing", "acceptance", "future_attitude")
# +1 when a higher number is better, -1 when a higher number is worse
DIRECTION = {"grief_trauma": -1, "healing": 1, "acceptance": 1, "future_attitude": 1}
TEXTS = ("current_problems", "problems_to_solve")
STATES = ["household", "member", *SCALES, *TEXTS, "confirm"]
MAX_TEXT = 2000
WHOLE_FAMILY = "family"


def is_urgent(scores: dict[str, int]) -> bool:
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

    # member
    async def ask_member(self) -> Reply | str:
        members = await members_of(self.ctx.session, int(self.data["household_id"]))
        elders = [(m, p) for m, p in members if m.relation in {"father", "mother"}]
        if len(elders) <= 1:
            if elders:
                self.data["member_id"], self.data["member_name"] = elders[0][0].id, elders[0][1].name
            return "next"
        return Reply(self.t("ask_member"), (*(Option(p.name, str(m.id)) for m, p in elders),
                                            Option(self.t("whole_family"), WHOLE_FAMILY)))

    async def on_member(self, answer: Answer) -> str | Invalid:
        if answer.value == WHOLE_FAMILY:
            self.data["member_id"], self.data["member_name"] = None, self.t("whole_family")
            return "next"
        for member, person in await members_of(self.ctx.session, int(self.data["household_id"])):
            if answer.value == str(member.id):
                self.data["member_id"], self.data["member_name"] = member.id, person.name
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
        self.data[scale] = int(value)
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
        self.data[key] = text
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
        return {s: int(self.data[s]) for s in SCALES}

    async def summary(self) -> str:
        d = self.data
        before = await previous_assessment(self.ctx.session, int(d["household_id"]), d.get("member_id"))
        lines = [self.t("summary_title", label=d.get("household_label", ""), who=d.get("member_name") or "")]
        if before is not None:
            lines.append(self.t("compared_with", date=before.assessed_on.isoformat()))
        lines.extend(compare_lines(self.ctx, self._scores(), before))
        none = self.ctx.t("engine.none")
        lines.append(self.t("s_current_problems", v=d.get("current_problems") or none))
        lines.append(self.t("s_problems_to_solve", v=d.get("problems_to_solve") or none))
        if is_urgent(self._scores()):
            lines.append(self.t("urgent_note"))
        return "\n".join(lines)

    async def save(self) -> Finish:
        d, session, now = self.data, self.ctx.session, self.ctx.now()
        person = self._person()
        household_id = int(d["household_id"])
        row = Assessment(household_id=household_id, member_id=d.get("member_id"), volunteer_id=person.id,
                         assessed_on=self.ctx.services.today(), **self._scores(),
                         current_problems=d.get("current_problems") or None,
                         problems_to_solve=d.get("problems_to_solve") or None, recorded_at=now)
        session.add(row)
        await session.flush()
        await self.ctx.audit("write", "assessment", row.id, household_id)
        if not is_urgent(self._scores()):
            return Finish.with_text(self.t("saved"))
        follow = await open_follow_up(session, household_id=household_id, source="assessment",
                                      source_id=row.id, text=self.t("urgent_followup"), now=now,
                                      fallback_owner_id=person.id)
        household = await session.get(Household, household_id)
        assert household is not None
        text = self.t("urgent_alert", household=d.get("household_label", household.code),
                      who=d.get("member_name") or "", volunteer=person.name)
        for coordinator in await alert_recipients(session, household.township_id):
            await self.ctx.notify(coordinator.id, Reply(text), kind="alert",
                                  key=f"alert:assessment:{row.id}:{coordinator.id}")
        follow.escalated_at = now  # the coordinator already knows
        return Finish.with_text(self.t("saved_urgent"))

