"""Pieces several dialogs share: choosing one of my households, and yes/no."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.recording import RecordForm
from dialogs.engine.types import Option, Reply
from domain.casebook import HouseholdChoice

MAX_LISTED = 40



@dataclass
class HouseholdForm(RecordForm):
    """The answers of a dialog that starts with 'which family?'."""

    household_id: int | None = None
    household_label: str = ""


class ChoosesHousehold(Dialog):
    """A dialog whose first question is 'which family?', limited to the sender's own scope."""

    form: HouseholdForm

    def chosen_id(self) -> int | None:
        return self.form.household_id

    def _keep_choice(self, household_id: int | None, label: str = "") -> None:
        self.form.household_id, self.form.household_label = household_id, label

    async def ask_household(self) -> Reply | str | Finish:
        book = self.ctx.book
        chosen = self.chosen_id()
        if chosen:
            picked = await book.household_choice(chosen)
            if picked is not None:
                self._keep_choice(picked.id, picked.label)
                return "next"
            self._keep_choice(None)
        choices = await book.household_choices(MAX_LISTED)
        if not choices:
            return Finish.with_text(self.ctx.t("common.no_households"))
        options = tuple(Option(choice.label, str(choice.id)) for choice in choices)
        return Reply(self.ctx.t("common.which_household"), options)

    async def on_household(self, answer: Answer) -> str | Invalid:
        picked = await self.picked_household(answer)
        if picked is None:
            return Invalid(self.ctx.t("common.pick_household"))
        self._keep_choice(picked.id, picked.label)
        return "next"

    async def picked_household(self, answer: Answer) -> HouseholdChoice | None:
        """The household an answer picked, with its label, if the sender may see it."""
        if answer.value is None or not answer.value.isdigit():
            return None
        return await self.ctx.book.household_choice(int(answer.value))

    def _person(self) -> Any:
        assert self.ctx.person is not None
        return self.ctx.person


def yes_no(ctx: Any) -> tuple[Option, Option]:
    return (Option(ctx.t("engine.yes"), "yes"), Option(ctx.t("engine.no"), "no"))


def read_yes_no(answer: Answer) -> bool | None:
    if answer.value in {"yes", "no"}:
        return answer.value == "yes"
    text = answer.text.lower()
    if text in {"是", "要", "需要", "对", "好", "y", "yes", "有", "确认", "是的"}:
        return True
    if text in {"否", "不", "不要", "不需要", "没有", "无", "n", "no", "不用"}:
        return False
    return None
