"""走访记录 — the visit report: who, when, how, and what the family needs.

    household → when → kind → occasion → physical → mood → needs → money → followup → confirm
    kind --attempt--> attempt_kind → occasion …   (the family declined, or was not reached:
                                                    physical, mood and money skip themselves)
    confirm --edit--> pick_field --goto_<field>--> <field> --review--> confirm
The outcome rides on the kind question (its last two options) so that the usual visit keeps
its short path; a declined visit paces the household down, a need becomes a follow-up (both
rules in domain/casework.py, applied by the casebook's `record_visit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise

from dialogs.common import ChoosesHousehold, HouseholdForm, read_yes_no, yes_no
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.recording import Records, change_one_field
from dialogs.engine.types import Option, Reply
from dialogs.parsing import fen_to_yuan, parse_date, parse_money
from domain.casebook import VisitRecord
from storage.models import VisitKind, VisitOutcome

FIELDS = ["when", "kind", "occasion", "physical", "mood", "needs", "money", "followup"]
KINDS = [VisitKind.HOME, VisitKind.PHONE, VisitKind.WECHAT, VisitKind.CARD, VisitKind.ACTIVITY]
NOT_DONE = [VisitOutcome.NOT_REACHED, VisitOutcome.DECLINED]
MAX_BACKDATE = timedelta(days=366)
MAX_TEXT = 2000


def _chain(states: list[str]) -> list[dict[str, str]]:
    return [{"trigger": "next", "source": a, "dest": b} for a, b in pairwise(states)]


@dataclass
class VisitForm(HouseholdForm):
    visited_on: date | None = None
    kind: str | None = None
    outcome: str = VisitOutcome.DONE
    occasion: str | None = None
    occasion_label: str | None = None
    physical: str | None = None
    mood: str | None = None
    needs: str | None = None
    money_fen: int = 0
    gifts: str | None = None
    follow_up: bool = False


class VisitReport(ChoosesHousehold, Records):
    name = "visit"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/visit", "走访", "走访记录", "visit")
    states = ["household", *FIELDS, "attempt_kind", "confirm", "pick_field"]
    transitions = [
        *_chain(["household", *FIELDS, "confirm"]),
        {"trigger": "attempt", "source": "kind", "dest": "attempt_kind"},
        {"trigger": "next", "source": "attempt_kind", "dest": "occasion"},
        *change_one_field(FIELDS, extra_sources=["attempt_kind"]),
    ]
    editable = tuple(FIELDS)
    form_type = VisitForm
    form: VisitForm

    def _done(self) -> str:
        return self.answered()

    def _day(self) -> date:
        assert self.form.visited_on is not None  # asked before every question that reads it
        return self.form.visited_on

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
        self.form.visited_on = day
        return self._done()

    def _met(self) -> bool:
        return self.form.outcome == VisitOutcome.DONE

    # kind (and, in its last options, a visit that did not happen)
    async def ask_kind(self) -> Reply:
        return Reply(self.t("ask_kind"), (*(Option(self.t(f"kind_{k}"), k) for k in KINDS),
                                          *(Option(self.t(f"outcome_{o}"), o) for o in NOT_DONE)))

    async def on_kind(self, answer: Answer) -> str | Invalid:
        outcome = answer.value if answer.value in NOT_DONE else None
        outcome = outcome or next((o for o in NOT_DONE if answer.text and answer.text == self.t(f"outcome_{o}")), None)
        if outcome is not None:
            self.form.outcome = outcome
            self.form.physical = self.form.mood = None
            self.form.money_fen, self.form.gifts = 0, ""
            return "attempt"
        if not self._met() and self.form.editing:
            self.form.editing = False  # it did happen after all: ask what was skipped
        self.form.outcome = VisitOutcome.DONE
        return await self.on_attempt_kind(answer)

    async def ask_attempt_kind(self) -> Reply:
        return Reply(self.t(f"ask_attempt_{self.form.outcome}"),
                     tuple(Option(self.t(f"kind_{k}"), k) for k in KINDS))

    async def on_attempt_kind(self, answer: Answer) -> str | Invalid:
        kind = answer.value if answer.value in KINDS else None
        if kind is None:
            for k in KINDS:
                if answer.text and answer.text in self.t(f"kind_{k}"):
                    kind = k
        if kind is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.kind = kind
        return self._done()

    # occasion
    def _occasion_label(self, key: str) -> str:
        if key == "birthday":
            return self.t("birthday")
        return dict(self.ctx.services.occasions.choices_near(self._day())).get(key, key)

    async def ask_occasion(self) -> Reply | str:
        prefilled = self.form.occasion
        if prefilled and self.form.occasion_label is None and not self.form.editing:
            self.form.occasion_label = self._occasion_label(prefilled)  # from a reminder's button
            return self._done()
        choices = list(self.ctx.services.occasions.choices_near(self._day()))[:6]
        options = [Option(self.t("no_occasion"), "none"), *(Option(n, k) for k, n in choices),
                   Option(self.t("birthday"), "birthday")]
        return Reply(self.t("ask_occasion"), tuple(options))

    async def on_occasion(self, answer: Answer) -> str | Invalid:
        if answer.value is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.occasion = None if answer.value == "none" else answer.value
        self.form.occasion_label = None if answer.value == "none" else self._occasion_label(answer.value)
        return self._done()

    # free-text states
    async def ask_physical(self) -> Reply | str:
        if not self._met():
            self.form.physical = None
            return self._done()
        return Reply(self.t("ask_physical"), tuple(Option(self.t(f"physical_{k}"), self.t(f"physical_{k}"))
                                                   for k in ("good", "fair", "poor")))

    async def on_physical(self, answer: Answer) -> str | Invalid:
        return self._text("physical", answer)

    async def ask_mood(self) -> Reply | str:
        if not self._met():
            self.form.mood = None
            return self._done()
        return Reply(self.t("ask_mood"), tuple(Option(self.t(f"mood_{k}"), self.t(f"mood_{k}"))
                                               for k in ("calm", "low", "anxious", "good")))

    async def on_mood(self, answer: Answer) -> str | Invalid:
        return self._text("mood", answer, limit=32)

    async def ask_needs(self) -> Reply:
        return Reply(self.t("ask_needs" if self._met() else "ask_needs_not_met"), (Option(self.ctx.t("engine.none"), ""),))

    async def on_needs(self, answer: Answer) -> str | Invalid:
        if answer.value == "" or answer.text in {"无", "没有", "none", "no"}:
            self.form.needs = ""
            return self._done()
        return self._text("needs", answer)

    def _text(self, field: str, answer: Answer, limit: int = MAX_TEXT) -> str | Invalid:
        text = (answer.value if answer.value is not None else answer.clean).strip()
        if not text:
            return Invalid(self.t("need_text"))
        if len(text) > limit:
            return Invalid(self.t("too_long", limit=limit))
        setattr(self.form, field, text)
        return self._done()

    # money
    async def ask_money(self) -> Reply | str:
        if not self._met():
            self.form.money_fen, self.form.gifts = 0, ""
            return self._done()
        return Reply(self.t("ask_money"), (Option(self.ctx.t("engine.none"), "0"),))

    async def on_money(self, answer: Answer) -> str | Invalid:
        parsed = parse_money(answer.value if answer.value is not None else answer.text)
        if parsed is None:
            return Invalid(self.t("bad_money"))
        self.form.money_fen, self.form.gifts = parsed[0], parsed[1][:MAX_TEXT]
        return self._done()

    # follow-up
    async def ask_followup(self) -> Reply:
        return Reply(self.t("ask_followup"), yes_no(self.ctx))

    async def on_followup(self, answer: Answer) -> str | Invalid:
        value = read_yes_no(answer)
        if value is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.follow_up = value
        return self._done()

    # confirm
    def summary(self) -> str:
        f = self.form
        money = fen_to_yuan(f.money_fen)
        lines = [
            self.t("summary_title"),
            self.t("s_household", v=f.household_label),
            self.t("s_when", v=f.visited_on.isoformat() if f.visited_on else ""),
            self.t("s_kind", v=self.t(f"kind_{f.kind}")),
            *([] if self._met() else [self.t("s_outcome", v=self.t(f"outcome_{f.outcome}"))]),
            self.t("s_occasion", v=f.occasion_label or self.t("no_occasion")),
            self.t("s_physical", v=f.physical or ""),
            self.t("s_mood", v=f.mood or ""),
            self.t("s_needs", v=f.needs or self.ctx.t("engine.none")),
            self.t("s_money", v=money, gifts=f.gifts or ""),
            self.t("s_followup", v=self.ctx.t("engine.yes" if f.follow_up else "engine.no")),
        ]
        if not self._met():  # nobody was met: no health, mood or gift to check
            lines = [line for line in lines if line not in {
                self.t("s_physical", v=""), self.t("s_mood", v=""), self.t("s_money", v=money, gifts="")}]
        return "\n".join(lines)

    async def save(self) -> Finish:
        f = self.form
        assert f.household_id is not None and f.kind is not None
        saved = await self.ctx.book.record_visit(VisitRecord(
            household_id=f.household_id, visited_on=self._day(), kind=f.kind, outcome=f.outcome,
            occasion=f.occasion, physical=f.physical, mood=f.mood, needs=f.needs or None,
            money_fen=f.money_fen, gifts=f.gifts or None, follow_up=f.follow_up))
        if saved.paced_days is not None:
            return Finish.with_text(self.t("saved_declined", days=saved.paced_days))
        return Finish.with_text(self.t("saved"))
