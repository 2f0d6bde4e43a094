"""跟进事项 — needs and complaints waiting for someone to act, and marking them handled.

    pick → act --done | working--> finish        (back → pick)

A volunteer sees the open items of the households they look after; a coordinator those of
their township (escalated ones first). "正在办" records that someone acted, which stops the
escalation clock; "已办好" closes the item. Nothing a family asked for is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.form import Form
from dialogs.engine.types import Option, Reply
from storage.models import FollowUp

MAX_LISTED = 30
PREVIEW = 24
OPEN = ("open", "in_progress")
SOURCES = ("visit", "reading", "family", "service", "intake", "assessment")


@dataclass
class FollowUpForm(Form):
    follow_up_id: int | None = None


class FollowUps(Dialog):
    name = "followups"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("/followups", "跟进", "跟进事项", "待办", "followups")
    states = ["pick", "act"]
    transitions = [
        {"trigger": "next", "source": "pick", "dest": "act"},
        {"trigger": "back", "source": "act", "dest": "pick"},
    ]

    form_type = FollowUpForm
    form: FollowUpForm

    def _source(self, source: str) -> str:
        return self.t(f"source_{source}") if source in SOURCES else source

    async def _item(self) -> FollowUp | None:
        if self.form.follow_up_id is None:
            return None
        return await self.ctx.book.follow_up(self.form.follow_up_id)

    async def ask_pick(self) -> Reply | str | Finish:
        if self.form.follow_up_id:
            item = await self._item()
            if item is not None and item.status in OPEN:
                return "next"
            self.form.follow_up_id = None
        book = self.ctx.book
        items = await book.open_follow_ups(OPEN, MAX_LISTED)
        if not items:
            return Finish.with_text(self.t("none_open"))
        labels = await book.labels(await book.households_by_id({i.household_id for i in items}))
        options = []
        for item in items:
            code = labels[item.household_id].split(" ")[0]
            when = self.ctx.services.local(item.created_at).strftime("%m-%d")
            text = (item.text or self._source(item.source)).replace("\n", " ")
            text = text if len(text) <= PREVIEW else text[:PREVIEW] + "…"
            flag = self.t("flag_escalated") if item.escalated_at else ""
            flag += self.t("flag_working") if item.status == "in_progress" else ""
            options.append(Option(f"{code} · {when} · {text}{flag}", str(item.id)))
        return Reply(self.t("list_title", n=len(items)), tuple(options))

    async def on_pick(self, answer: Answer) -> str | Invalid:
        if answer.value is None or not answer.value.isdigit():
            return Invalid(self.t("pick"))
        item = await self.ctx.book.follow_up(int(answer.value))
        if item is None or item.status not in OPEN:
            return Invalid(self.t("pick"))
        self.form.follow_up_id = item.id
        return "next"

    async def ask_act(self) -> Reply:
        item = await self._item()
        assert item is not None  # on_pick and ask_pick checked the scope
        households = await self.ctx.book.households_by_id({item.household_id})
        label = (await self.ctx.book.labels(households))[item.household_id]
        await self.ctx.audit("read", "follow_up", item.id, item.household_id)
        lines = [self.t("item_title", label=label),
                 self.t("item_when", date=self.ctx.services.local(item.created_at).date().isoformat(),
                        source=self._source(item.source)),
                 item.text or self.ctx.t("engine.none")]
        if item.escalated_at:
            lines.append(self.t("item_escalated"))
        lines.append(self.t("ask_act"))
        return Reply("\n".join(lines), (Option(self.t("act_done"), "done"), Option(self.t("act_working"), "working"),
                                        Option(self.t("act_back"), "back")))

    async def on_act(self, answer: Answer) -> str | Invalid | Finish:
        if answer.value == "back":
            self.form.follow_up_id = None
            return "back"
        if answer.value not in {"done", "working"}:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        item = await self._item()
        if item is None or item.status not in OPEN:
            return Finish.with_text(self.t("already_closed"))
        await self.ctx.book.mark_follow_up(item, "done" if answer.value == "done" else "in_progress")
        return Finish.with_text(self.t("marked_done" if answer.value == "done" else "marked_working"))
