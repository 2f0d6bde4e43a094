"""The end of every dialog that records something: show it, then save, change or discard.

Written once here and used by every recording dialog. A dialog that subclasses `Records` gives
`summary()` and `save()`; its transition table says where "change" leads: straight back to a
state (`{"trigger": "edit", "source": "confirm", "dest": <state>}`), or — with `editable`
set and `change_one_field(...)` in the table — to a list of fields, one of which is asked again
before the summary comes back (the other answers kept).

    confirm --save--> (saved)
    confirm --edit--> pick_field --goto_<field>--> <field> --review--> confirm
    confirm --discard--> (nothing written)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid, StepResult
from dialogs.engine.form import Form
from dialogs.engine.types import Option, Reply

SAVE, EDIT, DISCARD = "save", "edit", "discard"
SAVE_WORDS = frozenset({"保存", "确认", "是", "对", "好", "好的", "save", "ok", "y", "yes"})
EDIT_WORDS = frozenset({"修改", "改", "改名", "edit", "change"})
DISCARD_WORDS = frozenset({"放弃", "不保存", "discard"})


def confirm_options(ctx: Any) -> tuple[Option, ...]:
    return (Option(ctx.t("engine.save"), SAVE), Option(ctx.t("engine.edit"), EDIT),
            Option(ctx.t("common.discard"), DISCARD))


def read_confirm(answer: Answer, *, can_discard: bool = True,
                 save_words: frozenset[str] = SAVE_WORDS) -> str | None:
    """save | edit | discard, from a button or the words people type; None if neither."""
    choices = {SAVE, EDIT, DISCARD} if can_discard else {SAVE, EDIT}
    if answer.value in choices:
        return answer.value
    text = answer.text.lower()
    if text in save_words:
        return SAVE
    if text in EDIT_WORDS:
        return EDIT
    if can_discard and text in DISCARD_WORDS:
        return DISCARD
    return None


def change_one_field(fields: Sequence[str], *, confirm: str = "confirm",
                     extra_sources: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The transitions of "change one field": confirm → pick_field → <field> → confirm."""
    return [
        {"trigger": "edit", "source": confirm, "dest": "pick_field"},
        *({"trigger": f"goto_{f}", "source": "pick_field", "dest": f} for f in fields),
        {"trigger": "review", "source": [*fields, *extra_sources], "dest": confirm},
    ]


@dataclass
class RecordForm(Form):
    """Answers of a recording dialog: `editing` is set while one field is being changed."""

    editing: bool = False


class Records(Dialog):
    """Confirm before saving, and change one field, for every dialog that records something."""

    # the states "change" lists (with catalogue keys `<dialog>.field_<state>`); empty: the
    # table's own `edit` transition says where change leads
    editable: ClassVar[tuple[str, ...]] = ()
    # False where the confirm step offers no "discard" (a family's own settings: 修改 or 保存)
    can_discard: ClassVar[bool] = True
    # what typed words mean "save" here (a reply to a family is sent: 发送)
    save_words: ClassVar[frozenset[str]] = SAVE_WORDS
    form: RecordForm

    def summary(self) -> str | Awaitable[str]:
        raise NotImplementedError

    async def save(self) -> StepResult:
        raise NotImplementedError

    @property
    def editing(self) -> bool:
        """True while one field is being changed (its answer leads back to the summary)."""
        return self.form.editing

    @editing.setter
    def editing(self, value: bool) -> None:
        self.form.editing = value

    def answered(self) -> str:
        """The trigger after an answer: on to the next question, or back to the summary."""
        return "review" if self.editing else "next"

    def confirm_choices(self) -> tuple[Option, ...]:
        """The confirm step's buttons; a dialog may add one (intake: pause)."""
        return confirm_options(self.ctx)

    async def confirm_text(self) -> str:
        """What the confirm step shows: the summary and the question (a dialog may word it whole)."""
        summary = self.summary()
        text = await summary if inspect.isawaitable(summary) else summary
        return text + "\n" + self.t("ask_confirm")

    async def ask_confirm(self) -> Reply:
        self.editing = False
        return Reply(await self.confirm_text(), self.confirm_choices())

    async def on_confirm(self, answer: Answer) -> StepResult:
        choice = read_confirm(answer, can_discard=self.can_discard, save_words=self.save_words)
        if choice is None:
            return await self.unclear(answer)
        if choice == DISCARD:
            await self.discarded()
            return Finish.with_text(self.ctx.t("common.discarded"))
        if choice == EDIT:
            return await self.change()
        return await self.confirmed()

    async def change(self) -> StepResult:
        """What "change" does: the `edit` trigger; a dialog may reset an answer first."""
        return EDIT

    async def unclear(self, answer: Answer) -> StepResult:
        """Hook: an answer that is none of the three (family dialogs keep real words as a message)."""
        return Invalid(self.ctx.t("engine.invalid_choice"))

    async def discarded(self) -> None:
        """Hook: what discarding also throws away (intake: its paused draft)."""

    async def confirmed(self) -> StepResult:
        """What saving does; a dialog that goes on after saving (another service) overrides it."""
        return await self.save()

    async def ask_pick_field(self) -> Reply:
        return Reply(self.ctx.t("common.which_field"),
                     tuple(Option(self.t(f"field_{f}"), f) for f in self.editable))

    async def on_pick_field(self, answer: Answer) -> str | Invalid:
        if answer.value not in self.editable:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.editing = True
        self.start_editing(answer.value)
        return f"goto_{answer.value}"

    def start_editing(self, field: str) -> None:
        """Hook: reset what asking `field` again needs (intake: start at the first member)."""
