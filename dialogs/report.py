"""报表 — the supervision summary in chat: a short text and a chart for the sender's scope.

    show --again--> show      (another period chosen from the buttons or typed, e.g. 2026-Q3)

A coordinator sees their township, an admin the county; the figures and the chart come from
the `reports` service (bot/reports/chat.py), so this dialog only asks and shows.
"""

from __future__ import annotations

from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.types import Option, Reply

PERIOD_CHOICES = ("month", "last_month", "quarter", "year")


class ReportDialog(Dialog):
    name = "report"
    roles = frozenset({"coordinator", "admin"})
    keywords = ("/report", "报表", "统计", "report")
    states = ["show"]
    transitions = [{"trigger": "again", "source": "show", "dest": "show"}]

    async def ask_show(self) -> Reply | Finish:
        if self.ctx.services.reports is None:
            return Finish.with_text(self.t("unavailable"))
        try:
            text, chart = await self.ctx.book.chat_report(self.data.get("period"))
        except ValueError:  # a typed period the reports cannot read: say so, offer the buttons
            self.data.pop("period", None)
            return Reply(self.t("bad_period"), self._options())
        await self.ctx.audit("read", "report", None, None, detail=self.data.get("period") or "month")
        return Reply(f"{text}\n{self.t('other_periods')}", self._options(), chart)

    def _options(self) -> tuple[Option, ...]:
        return tuple(Option(self.t(f"p_{key}"), key) for key in PERIOD_CHOICES)

    async def on_show(self, answer: Answer) -> str | Invalid:
        choice = answer.value if answer.value in PERIOD_CHOICES else answer.text.strip()
        if not choice:
            return Invalid(self.t("bad_period"))
        if answer.value is None and not any(ch.isdigit() for ch in choice):
            return Invalid(self.t("bad_period"))
        self.data["period"] = choice
        return "again"
