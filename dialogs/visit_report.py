"""走访记录 — the visit report: who, when, how, and what the family needs.

    household → when → kind → occasion → physical → mood → needs → money → followup → confirm
    kind --attempt--> attempt_kind → occasion …   (the family declined, or was not reached:
                                                    physical, mood and money skip themselves)
    confirm --edit--> pick_field --goto_<field>--> <field> --review--> confirm
The outcome rides on the kind question (its last two options) so that the usual visit keeps
its short path; a declined visit paces the household down, a need becomes a follow-up.
"""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

from dialogs.common import ChoosesHousehold, ConfirmsBeforeSaving, read_yes_no, yes_no
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.types import Option, Reply
from dialogs.parsing import fen_to_yuan, parse_date, parse_money
from domain.casework import open_follow_up, pace_down
from storage.models import Household, Visit, VisitKind, VisitOutcome

FIELDS = ["when", "kind", "occasion", "physical", "mood", "needs", "money", "followup"]
KINDS = [VisitKind.HOME, VisitKind.PHONE, VisitKind.WECHAT, VisitKind.CARD, VisitKind.ACTIVITY]
NOT_DONE = [VisitOutcome.NOT_REACHED, VisitOutcome.DECLINED]
MAX_BACKDATE = timedelta(days=366)
MAX_TEXT = 2000


def _chain(states: list[str]) -> list[dict[str, str]]:
    return [{"trigger": "next", "source": a, "dest": b} for a, b in pairwise(states)]


class VisitReport(ChoosesHousehold, ConfirmsBeforeSaving):
    name = "visit"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/visit", "走访", "走访记录", "visit")
    states = ["household", *FIELDS, "attempt_kind", "confirm", "pick_field"]
    transitions = [
        *_chain(["household", *FIELDS, "confirm"]),
        {"trigger": "attempt", "source": "kind", "dest": "attempt_kind"},
        {"trigger": "next", "source": "attempt_kind", "dest": "occasion"},
        {"trigger": "review", "source": [*FIELDS, "attempt_kind"], "dest": "confirm"},
        {"trigger": "edit", "source": "confirm", "dest": "pick_field"},
        *({"trigger": f"goto_{f}", "source": "pick_field", "dest": f} for f in FIELDS),
    ]

    def _done(self) -> str:
        return "review" if self.data.get("editing") else "next"

    # when
    async def ask_when(self) -> Reply:
        return Reply(self.t("ask_when"), (Option(self.t("today"), "today"),
                                          Option(self.t("yesterday"), "yesterday")))

    async def on_when(self, answer: Answer) -> str | Invalid:
        today = self.ctx.services.today()
        day = {"today": today, "yesterday": today - timedelta(days=1)}.get(answer.value or "")
        day = day or parse_date(answer.text, today)
        if day is None:
            return Invalid(self.t("bad_date"))
        if day > today:
            return Invalid(self.t("future_date"))
        if today - day > MAX_BACKDATE:
            return Invalid(self.t("too_old"))
        self.data["visited_on"] = day.isoformat()
        return self._done()

    def _met(self) -> bool:
        return self.data.get("outcome", VisitOutcome.DONE) == VisitOutcome.DONE

    # kind (and, in its last options, a visit that did not happen)
    async def ask_kind(self) -> Reply:
        return Reply(self.t("ask_kind"), (*(Option(self.t(f"kind_{k}"), k) for k in KINDS),
                                          *(Option(self.t(f"outcome_{o}"), o) for o in NOT_DONE)))

    async def on_kind(self, answer: Answer) -> str | Invalid:
        outcome = answer.value if answer.value in NOT_DONE else None
        outcome = outcome or next((o for o in NOT_DONE if answer.text and answer.text == self.t(f"outcome_{o}")), None)
        if outcome is not None:
            self.data["outcome"] = outcome
            for met_only in ("physical", "mood"):
                self.data.pop(met_only, None)
            self.data["money_fen"], self.data["gifts"] = 0, ""
            return "attempt"
        if not self._met() and self.data.get("editing"):
            self.data.pop("editing")  # it did happen after all: ask what was skipped
        self.data["outcome"] = VisitOutcome.DONE
        return await self.on_attempt_kind(answer)

    async def ask_attempt_kind(self) -> Reply:
        return Reply(self.t(f"ask_attempt_{self.data.get('outcome')}"),
                     tuple(Option(self.t(f"kind_{k}"), k) for k in KINDS))

    async def on_attempt_kind(self, answer: Answer) -> str | Invalid:
        kind = answer.value if answer.value in KINDS else None
        if kind is None:
            for k in KINDS:
                if answer.text and answer.text in self.t(f"kind_{k}"):
                    kind = k
        if kind is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["kind"] = kind
        return self._done()

    # occasion
    def _occasion_label(self, key: str) -> str:
        if key == "birthday":
            return self.t("birthday")
        day = date.fromisoformat(self.data["visited_on"])
        return dict(self.ctx.services.occasions.choices_near(day)).get(key, key)

    async def ask_occasion(self) -> Reply | str:
        prefilled = self.data.get("occasion")
        if prefilled and "occasion_label" not in self.data and not self.data.get("editing"):
            self.data["occasion_label"] = self._occasion_label(prefilled)  # from a reminder's button
            return self._done()
        day = date.fromisoformat(self.data["visited_on"])
        choices = [(key, name) for key, name in self.ctx.services.occasions.choices_near(day)][:6]
        options = [Option(self.t("no_occasion"), "none"), *(Option(n, k) for k, n in choices),
                   Option(self.t("birthday"), "birthday")]
        return Reply(self.t("ask_occasion"), tuple(options))

    async def on_occasion(self, answer: Answer) -> str | Invalid:
        if answer.value is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["occasion"] = None if answer.value == "none" else answer.value
        self.data["occasion_label"] = None if answer.value == "none" else self._occasion_label(answer.value)
        return self._done()

    # free-text states
    async def ask_physical(self) -> Reply | str:
        if not self._met():
            self.data.pop("physical", None)
            return self._done()
        return Reply(self.t("ask_physical"), tuple(Option(self.t(f"physical_{k}"), self.t(f"physical_{k}"))
                                                   for k in ("good", "fair", "poor")))

    async def on_physical(self, answer: Answer) -> str | Invalid:
        return self._text("physical", answer)

    async def ask_mood(self) -> Reply | str:
        if not self._met():
            self.data.pop("mood", None)
            return self._done()
        return Reply(self.t("ask_mood"), tuple(Option(self.t(f"mood_{k}"), self.t(f"mood_{k}"))
                                               for k in ("calm", "low", "anxious", "good")))

    async def on_mood(self, answer: Answer) -> str | Invalid:
        return self._text("mood", answer, limit=32)

    async def ask_needs(self) -> Reply:
        return Reply(self.t("ask_needs" if self._met() else "ask_needs_not_met"), (Option(self.ctx.t("engine.none"), ""),))

    async def on_needs(self, answer: Answer) -> str | Invalid:
        if answer.value == "" or answer.text in {"无", "没有", "none", "no"}:
            self.data["needs"] = ""
            return self._done()
        return self._text("needs", answer)

    def _text(self, field: str, answer: Answer, limit: int = MAX_TEXT) -> str | Invalid:
        text = (answer.value if answer.value is not None else answer.clean).strip()
        if not text:
            return Invalid(self.t("need_text"))
        if len(text) > limit:
            return Invalid(self.t("too_long", limit=limit))
        self.data[field] = text
        return self._done()

    # money
    async def ask_money(self) -> Reply | str:
        if not self._met():
            self.data["money_fen"], self.data["gifts"] = 0, ""
            return self._done()
        return Reply(self.t("ask_money"), (Option(self.ctx.t("engine.none"), "0"),))

    async def on_money(self, answer: Answer) -> str | Invalid:
        parsed = parse_money(answer.value if answer.value is not None else answer.text)
        if parsed is None:
            return Invalid(self.t("bad_money"))
        self.data["money_fen"], self.data["gifts"] = parsed[0], parsed[1][:MAX_TEXT]
        return self._done()

    # follow-up
    async def ask_followup(self) -> Reply:
        return Reply(self.t("ask_followup"), yes_no(self.ctx))

    async def on_followup(self, answer: Answer) -> str | Invalid:
        value = read_yes_no(answer)
        if value is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["follow_up"] = value
        return self._done()

    # confirm
    def summary(self) -> str:
        d = self.data
        money = fen_to_yuan(int(d.get("money_fen", 0)))
        lines = [
            self.t("summary_title"),
            self.t("s_household", v=d.get("household_label", "")),
            self.t("s_when", v=d.get("visited_on", "")),
            self.t("s_kind", v=self.t(f"kind_{d.get('kind')}")),
            *([] if self._met() else [self.t("s_outcome", v=self.t(f"outcome_{d.get('outcome')}"))]),
            self.t("s_occasion", v=d.get("occasion_label") or self.t("no_occasion")),
            self.t("s_physical", v=d.get("physical", "")),
            self.t("s_mood", v=d.get("mood", "")),
            self.t("s_needs", v=d.get("needs") or self.ctx.t("engine.none")),
            self.t("s_money", v=money, gifts=d.get("gifts") or ""),
            self.t("s_followup", v=self.ctx.t("engine.yes" if d.get("follow_up") else "engine.no")),
        ]
        if not self._met():  # nobody was met: no health, mood or gift to check
            lines = [line for line in lines if line not in {
                self.t("s_physical", v=""), self.t("s_mood", v=""), self.t("s_money", v=money, gifts="")}]
        return "\n".join(lines)

    async def ask_confirm(self) -> Reply:
        self.data.pop("editing", None)
        return await super().ask_confirm()

    async def ask_pick_field(self) -> Reply:
        return Reply(self.ctx.t("common.which_field"),
                     tuple(Option(self.t(f"field_{f}"), f) for f in FIELDS))

    async def on_pick_field(self, answer: Answer) -> str | Invalid:
        if answer.value not in FIELDS:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["editing"] = True
        return f"goto_{answer.value}"

    async def save(self) -> Finish:
        assert self.ctx.person is not None
        d = self.data
        household_id = int(d["household_id"])
        outcome = d.get("outcome", VisitOutcome.DONE)
        visit = Visit(
            household_id=household_id, volunteer_id=self.ctx.person.id,
            visited_on=date.fromisoformat(d["visited_on"]), kind=d["kind"], outcome=outcome,
            occasion=d.get("occasion"), physical_state=d.get("physical"), mood=d.get("mood"),
            needs=d.get("needs") or None, money_fen=int(d.get("money_fen", 0)),
            gifts=d.get("gifts") or None, follow_up=bool(d.get("follow_up")),
            recorded_at=self.ctx.now(),
        )
        self.ctx.session.add(visit)
        await self.ctx.session.flush()
        if visit.follow_up:
            await open_follow_up(self.ctx.session, household_id=household_id, source="visit",
                                 source_id=visit.id, text=visit.needs, now=self.ctx.now(),
                                 fallback_owner_id=self.ctx.person.id)
        await self.ctx.audit("write", "visit", visit.id, household_id)
        if outcome == VisitOutcome.DECLINED:
            household = await self.ctx.session.get(Household, household_id)
            assert household is not None
            days = pace_down(household, self.ctx.now(), self.ctx.services.casework)
            await self.ctx.audit("write", "household", household_id, household_id, "paced_down")
            return Finish.with_text(self.t("saved_declined", days=days))
        return Finish.with_text(self.t("saved"))
