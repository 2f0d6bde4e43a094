"""Pieces several dialogs share: choosing one of my households, yes/no, the save-or-change step."""

from __future__ import annotations

import inspect
from typing import Any

from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid, StepResult
from dialogs.engine.types import Option, Reply
from storage.queries import household_for, household_labels, households_for

MAX_LISTED = 40


class ChoosesHousehold(Dialog):
    """A dialog whose first question is 'which family?', limited to the sender's own scope."""

    async def ask_household(self) -> Reply | str | Finish:
        if self.data.get("household_id"):
            household = await household_for(self.ctx.session, self._person(), int(self.data["household_id"]))
            if household is not None:
                labels = await household_labels(self.ctx.session, [household])
                self.data["household_label"] = labels[household.id]
                return "next"
            self.data.pop("household_id", None)
        households = await households_for(self.ctx.session, self._person())
        if not households:
            return Finish.with_text(self.ctx.t("common.no_households"))
        labels = await household_labels(self.ctx.session, households[:MAX_LISTED])
        options = tuple(Option(labels[h.id], str(h.id)) for h in households[:MAX_LISTED])
        return Reply(self.ctx.t("common.which_household"), options)

    async def on_household(self, answer: Answer) -> str | Invalid:
        if answer.value is None or not answer.value.isdigit():
            return Invalid(self.ctx.t("common.pick_household"))
        household = await household_for(self.ctx.session, self._person(), int(answer.value))
        if household is None:
            return Invalid(self.ctx.t("common.pick_household"))
        self.data["household_id"] = household.id
        self.data["household_label"] = (await household_labels(self.ctx.session, [household]))[household.id]
        return "next"

    def _person(self) -> Any:
        assert self.ctx.person is not None
        return self.ctx.person


class ConfirmsBeforeSaving(Dialog):
    """The last step of every dialog that records something: show it, then save, change or discard.

    Subclasses give `summary()` (plain or async) and `save()`; `edit` is their own trigger back
    into the answers.
    """

    async def ask_confirm(self) -> Reply:
        summary = self.summary()  # type: ignore[attr-defined]
        if inspect.isawaitable(summary):
            summary = await summary
        return Reply(summary + "\n" + self.t("ask_confirm"), confirm_options(self.ctx))

    async def on_confirm(self, answer: Answer) -> StepResult:
        choice = read_confirm(answer)
        if choice is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        if choice == "discard":
            return Finish.with_text(self.ctx.t("common.discarded"))
        if choice == "edit":
            return "edit"
        return await self.confirmed()

    async def confirmed(self) -> StepResult:
        return await self.save()  # type: ignore[attr-defined, no-any-return]


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


def confirm_options(ctx: Any) -> tuple[Option, ...]:
    return (Option(ctx.t("engine.save"), "save"), Option(ctx.t("engine.edit"), "edit"),
            Option(ctx.t("common.discard"), "discard"))


def read_confirm(answer: Answer) -> str | None:
    if answer.value in {"save", "edit", "discard"}:
        return answer.value
    text = answer.text.lower()
    if text in {"保存", "确认", "是", "对", "好", "save", "ok", "y", "yes"}:
        return "save"
    if text in {"修改", "改", "edit", "change"}:
        return "edit"
    if text in {"放弃", "不保存", "discard"}:
        return "discard"
    return None
