"""报表 — the supervision summary in chat: a short text and a chart for the sender's scope.

    show --again--> show      (another period chosen from the buttons or typed, e.g. 2026-Q3)

A coordinator sees their township, an admin the county; the figures and the chart come from
the `reports` service (bot/reports/chat.py), so this dialog only asks and shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.form import Form
from dialogs.engine.types import Option, Reply

PERIOD_CHOICES = ("month", "last_month", "quarter", "year")


@dataclass
class ReportForm(Form):
    period: str | None = None


class ReportDialog(Dialog):
    name = "report"
    roles = frozenset({"coordinator", "admin"})
    keywords = ("/report", "报表", "统计", "report")
    states = ["show"]
    transitions = [{"trigger": "again", "source": "show", "dest": "show"}]
    form_type = ReportForm
    form: ReportForm

    async def ask_show(self) -> Reply | Finish:
        if self.ctx.services.reports is None:
            return Finish.with_text(self.t("unavailable"))
        try:
            text, chart = await self.ctx.book.chat_report(self.form.period)
        except ValueError:  # a typed period the reports cannot read: say so, offer the buttons
            self.form.period = None
            return Reply(self.t("bad_period"), self._options())
        await self.ctx.audit("read", "report", None, None, detail=self.form.period or "month")
        return Reply(f"{text}\n{self.t('other_periods')}", self._options(), chart)

    def _options(self) -> tuple[Option, ...]:
        return tuple(Option(self.t(f"p_{key}"), key) for key in PERIOD_CHOICES)

    async def on_show(self, answer: Answer) -> str | Invalid:
        choice = answer.value if answer.value in PERIOD_CHOICES else answer.text.strip()
        if not choice:
            return Invalid(self.t("bad_period"))
        if answer.value is None and not any(ch.isdigit() for ch in choice):
            return Invalid(self.t("bad_period"))
        self.form.period = choice
        return "again"
