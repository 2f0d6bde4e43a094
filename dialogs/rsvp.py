"""回复邀请 — answer an activity invitation: 参加 / 不参加 / 待定.

    pick → answer
A button in an invitation starts this dialog with the invitation and the answer filled in, so
one press records it. Typed "参加" outside a dialog starts it too: the open invitations are
listed (one is chosen by itself) and the answer asked. Only the invited person can answer
(the invitation is re-checked against the sender), and only until the activity starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.form import Form
from dialogs.engine.types import Option, Reply
from dialogs.parsing import normalize
from domain.invitations import ANSWERS, describe, when_text
from storage.models import Activity, Invitation

_WORDS = {
    "no": {"不参加", "不去", "不来", "去不了", "来不了", "参加不了", "不", "否", "no", "n"},
    "maybe": {"待定", "不确定", "再说", "看情况", "可能", "maybe", "?", "？"},
    "yes": {"参加", "去", "来", "报名", "我参加", "我去", "好", "好的", "是", "yes", "y"},
}
MAX_LISTED = 20


def read_answer(text: str) -> str | None:
    """yes | no | maybe from what people type; '不…' is read before '参加' so 不参加 means no."""
    s = normalize(text).lower().rstrip("。.!！")
    for answer in ("no", "maybe", "yes"):
        if s in _WORDS[answer]:
            return answer
    return None


@dataclass
class RsvpForm(Form):
    invitation_id: int | None = None
    answer: str | None = None


class Rsvp(Dialog):
    name = "rsvp"
    roles = frozenset({"volunteer", "coordinator", "admin", "family"})
    keywords = ("/rsvp", "参加", "不参加", "待定", "报名", "回复邀请", "rsvp")
    in_menu = False
    states = ["pick", "answer"]
    transitions = [{"trigger": "next", "source": "pick", "dest": "answer"}]
    form_type = RsvpForm
    form: RsvpForm

    async def begin(self, args: dict[str, Any]) -> None:
        invitation_id = args.get("invitation_id")
        if isinstance(invitation_id, int) and not isinstance(invitation_id, bool):
            self.form.invitation_id = invitation_id
        answer = args.get("answer") if args.get("answer") in ANSWERS else None
        answer = answer or read_answer(str(args.get("text") or ""))
        if answer:
            self.form.answer = answer

    async def _open(self) -> list[tuple[Invitation, Activity]]:
        return await self.ctx.book.open_invitations(MAX_LISTED)

    async def ask_pick(self) -> Reply | str | Finish:
        if self.form.invitation_id:
            return "next"
        open_ = await self._open()
        if not open_:
            return Finish.with_text(self.t("none_open"))
        if len(open_) == 1:
            self.form.invitation_id = open_[0][0].id
            return "next"
        tz = self.ctx.services.timezone
        return Reply(self.t("ask_pick"), tuple(
            Option(f"{act.title} · {when_text(act.starts_at, tz)}", str(inv.id)) for inv, act in open_))

    async def on_pick(self, answer: Answer) -> str | Invalid:
        ids = {inv.id for inv, _ in await self._open()}
        if answer.value is None or not answer.value.isdigit() or int(answer.value) not in ids:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.invitation_id = int(answer.value)
        return "next"

    async def ask_answer(self) -> Reply | Finish:
        if self.form.answer:
            return await self._record(self.form.answer)
        found = await self.ctx.book.my_invitation(int(self.form.invitation_id))
        if found is None:
            return Finish.with_text(self.t("not_yours"))
        _invitation, activity = found
        text = describe(activity, self.ctx.services.timezone, self.ctx.locale)
        return Reply(text + "\n" + self.t("ask_answer"),
                     tuple(Option(self.ctx.t(f"activity.answer_{a}"), a) for a in ANSWERS))

    async def on_answer(self, answer: Answer) -> Finish | Invalid:
        value = answer.value if answer.value in ANSWERS else read_answer(answer.text)
        if value is None:
            return Invalid(self.t("bad_answer"))
        return await self._record(value)

    async def _record(self, answer: str) -> Finish:
        outcome = await self.ctx.book.record_rsvp(int(self.form.invitation_id), answer, self.ctx.channel)
        if outcome.status in {"not_found", "cancelled", "closed"}:
            return Finish.with_text(self.t(outcome.status))
        assert outcome.activity is not None and outcome.invitation is not None
        about = describe(outcome.activity, self.ctx.services.timezone, self.ctx.locale)
        if outcome.status == "waitlisted":
            head = self.t("waitlisted", n=outcome.position or 1)
        else:
            head = self.t(f"recorded_{answer}" if outcome.changed else f"unchanged_{answer}")
        return Finish.with_text("\n".join([head, about, self.t("can_change")]))
