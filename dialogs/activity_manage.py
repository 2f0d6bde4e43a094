"""活动管理 — a coordinator follows an activity through: answers, attendance, cancel, new time.

    pick → action ─attend→ attendance ─marked→ action
                  ├cancel→ cancel_reason → cancel_confirm → (done)
                  └move──→ reschedule → reschedule_confirm → (done)
The summary counts invited / yes / waitlist / no / maybe / no answer / attended, per channel.
Only activities in the sender's scope are listed or loaded (`storage.activity_stats`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dialogs.activity_create import channel_name, read_when
from dialogs.common import read_yes_no, yes_no
from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.form import Form
from dialogs.engine.types import Option, Reply
from dialogs.parsing import normalize
from domain.invitations import (
    Status,
    attendance_open,
    describe,
    when_text,
)
from storage.activity_stats import (
    ALL_CHANNELS,
    Counts,
)
from storage.models import Activity, Invitation, Person

MAX_LISTED = 20
MAX_ATTENDANCE = 200
LISTED_SINCE = timedelta(days=60)
MAX_REASON = 200


def summary_lines(ctx: Any, per_channel: dict[str, Counts]) -> list[str]:
    """The coordinator's summary: one line in total, then one per channel."""
    total = per_channel.get(ALL_CHANNELS, Counts())

    def line(c: Counts) -> str:
        return ctx.t("activity_manage.counts", invited=c.invited, yes=c.yes, waitlisted=c.waitlisted,
                     no=c.no, maybe=c.maybe, no_answer=c.no_answer, attended=c.attended)

    lines = [ctx.t("activity_manage.total", v=line(total))]
    for channel in sorted(c for c in per_channel if c != ALL_CHANNELS):
        lines.append(ctx.t("activity_manage.by_channel", channel=channel_name(ctx, channel),
                           v=line(per_channel[channel])))
    return lines


@dataclass
class ManageForm(Form):
    activity_id: int | None = None
    listed: list[int] | None = None  # the invitations shown on the attendance list
    flash: str | None = None  # said once at the top of the next summary
    reason: str | None = None
    new_start: str | None = None  # ISO date and time


class ActivityManage(Dialog):
    name = "activity_manage"
    roles = frozenset({"coordinator", "admin"})
    keywords = ("/activities", "活动管理", "我的活动", "活动")
    states = ["pick", "action", "attendance", "cancel_reason", "cancel_confirm", "reschedule",
              "reschedule_confirm"]
    transitions = [
        {"trigger": "next", "source": "pick", "dest": "action"},
        {"trigger": "refresh", "source": "action", "dest": "action"},
        {"trigger": "attend", "source": "action", "dest": "attendance"},
        {"trigger": "marked", "source": "attendance", "dest": "action"},
        {"trigger": "cancel", "source": "action", "dest": "cancel_reason"},
        {"trigger": "next", "source": "cancel_reason", "dest": "cancel_confirm"},
        {"trigger": "move", "source": "action", "dest": "reschedule"},
        {"trigger": "next", "source": "reschedule", "dest": "reschedule_confirm"},
        {"trigger": "back", "source": ["cancel_confirm", "reschedule_confirm"], "dest": "action"},
    ]
    form_type = ManageForm
    form: ManageForm

    def _person(self) -> Person:
        assert self.ctx.person is not None
        return self.ctx.person

    async def _activity(self) -> Activity | None:
        """The chosen activity, loaded through the sender's scope (never by id alone)."""
        activity_id = self.form.activity_id
        if not isinstance(activity_id, int):
            return None
        return await self.ctx.book.activity(activity_id)

    async def begin(self, args: dict[str, Any]) -> None:
        if isinstance(args.get("activity_id"), int):
            self.form.activity_id = args["activity_id"]

    # pick
    async def ask_pick(self) -> Reply | str | Finish:
        if await self._activity() is not None:
            return "next"
        self.form.activity_id = None
        since = self.ctx.now() - LISTED_SINCE
        activities = await self.ctx.book.recent_activities(since, MAX_LISTED)
        if not activities:
            return Finish.with_text(self.t("none"))
        tz = self.ctx.services.timezone
        return Reply(self.t("ask_pick"), tuple(
            Option(f"{a.title} · {when_text(a.starts_at, tz)} · {self.t('status_' + a.status)}", str(a.id))
            for a in activities))

    async def on_pick(self, answer: Answer) -> str | Invalid:
        if answer.value is None or not answer.value.isdigit():
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.activity_id = int(answer.value)
        if await self._activity() is None:
            self.form.activity_id = None
            return Invalid(self.ctx.t("engine.invalid_choice"))
        return "next"

    # action: the summary and what can be done now
    async def summary(self, activity: Activity) -> str:
        tz = self.ctx.services.timezone
        lines = [describe(activity, tz, self.ctx.locale)]
        status = self.t("status_" + activity.status)
        if activity.status == Status.SCHEDULED and activity.send_at is not None:
            status = self.t("scheduled_at", when=when_text(activity.send_at, tz))
        lines.append(self.t("status", v=status))
        per_channel = await self.ctx.book.activity_counts(activity.id)
        if per_channel:
            lines += summary_lines(self.ctx, per_channel)
        return "\n".join(lines)

    def _options(self, activity: Activity) -> tuple[Option, ...]:
        now = self.ctx.now()
        options = [Option(self.t("refresh"), "refresh")]
        if attendance_open(activity, now):
            options.insert(0, Option(self.t("mark_attendance"), "attend"))
        if activity.status in (Status.SENT, Status.SCHEDULED) and activity.starts_at > now:
            options += [Option(self.t("reschedule"), "move"), Option(self.t("cancel"), "cancel")]
        options.append(Option(self.t("done"), "done"))
        return tuple(options)

    async def ask_action(self) -> Reply | Finish:
        activity = await self._activity()
        if activity is None:
            return Finish.with_text(self.t("none"))
        flash, self.form.flash = self.form.flash, None
        text = await self.summary(activity)
        return Reply("\n".join([*([flash] if flash else []), text]), self._options(activity))

    async def on_action(self, answer: Answer) -> str | Invalid | Finish:
        if answer.value == "done":
            return Finish.with_text(self.t("bye"))
        activity = await self._activity()
        if activity is None:
            return Finish.with_text(self.t("none"))
        if answer.value not in {o.value for o in self._options(activity)}:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        return str(answer.value)

    # attendance
    async def ask_attendance(self) -> Reply | str:
        listed = (await self.ctx.book.attendance_list(int(self.form.activity_id)))[:MAX_ATTENDANCE]
        if not listed:
            self.form.flash = self.t("nobody_to_mark")
            return "marked"
        self.form.listed = [inv.id for inv, _ in listed]
        lines = [self.t("ask_attendance")]
        for i, (inv, name) in enumerate(listed, start=1):
            mark = " ✓" if inv.attended else ""
            lines.append(f"{i}. {name}（{self._answer_label(inv)}）{mark}")
        # no buttons here: a typed "1" must mean person 1, not the first button
        return Reply("\n".join(lines))

    def _answer_label(self, invitation: Invitation) -> str:
        if invitation.rsvp == "yes" and invitation.waitlisted:
            return self.t("waitlist_label")
        return self.ctx.t(f"activity.answer_{invitation.rsvp}")

    async def on_attendance(self, answer: Answer) -> str | Invalid:
        listed: list[int] = list(self.form.listed or [])
        text = normalize(answer.text)
        if text in {"全部", "都来了", "全部来了", "all"}:
            present = set(listed)
        elif text in {"无", "都没来", "没有", "none"}:
            present = set()
        else:
            present = set()
            for part in re.split(r"[,，、;；\s]+", text):
                if not part:
                    continue
                if not part.isdigit() or not 1 <= int(part) <= len(listed):
                    return Invalid(self.t("bad_attendance", n=len(listed)))
                present.add(listed[int(part) - 1])
            if not present:
                return Invalid(self.t("bad_attendance", n=len(listed)))
        activity = await self._activity()
        assert activity is not None
        came = await self.ctx.book.mark_attendance(activity, present, listed)
        self.form.listed = None
        self.form.flash = self.t("attendance_saved", n=came)
        return "marked"

    # cancel
    async def ask_cancel_reason(self) -> Reply:
        return Reply(self.t("ask_reason"), (Option(self.t("no_reason"), ""),))

    async def on_cancel_reason(self, answer: Answer) -> str | Invalid:
        text = "" if answer.value == "" else answer.clean.strip()
        if len(text) > MAX_REASON:
            return Invalid(self.t("too_long", limit=MAX_REASON))
        self.form.reason = text or None
        return "next"

    async def _invited(self) -> int:
        return await self.ctx.book.invited_count(int(self.form.activity_id))

    async def ask_cancel_confirm(self) -> Reply:
        return Reply(self.t("confirm_cancel", n=await self._invited()), yes_no(self.ctx))

    async def on_cancel_confirm(self, answer: Answer) -> str | Invalid | Finish:
        choice = read_yes_no(answer)
        if choice is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        if not choice:
            return "back"
        activity = await self._activity()
        assert activity is not None
        told = await self.ctx.book.cancel_activity(activity, self.form.reason)
        return Finish.with_text(self.t("cancelled", n=told))

    # reschedule
    async def ask_reschedule(self) -> Reply:
        return Reply(self.t("ask_new_time"))

    async def on_reschedule(self, answer: Answer) -> str | Invalid:
        found = read_when(answer.text, self.ctx.services)
        if isinstance(found, str):
            return Invalid(self.ctx.t(f"activity_create.{found}"))
        activity = await self._activity()
        assert activity is not None
        if activity.status == Status.SCHEDULED and activity.send_at and found <= activity.send_at:
            return Invalid(self.t("before_send_at"))
        self.form.new_start = found.isoformat()
        return "next"

    async def ask_reschedule_confirm(self) -> Reply:
        when = when_text(datetime.fromisoformat(self.form.new_start), self.ctx.services.timezone)
        return Reply(self.t("confirm_move", when=when, n=await self._invited()), yes_no(self.ctx))

    async def on_reschedule_confirm(self, answer: Answer) -> str | Invalid | Finish:
        choice = read_yes_no(answer)
        if choice is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        if not choice:
            return "back"
        activity = await self._activity()
        assert activity is not None
        told = await self.ctx.book.reschedule_activity(activity, datetime.fromisoformat(self.form.new_start))
        when = when_text(activity.starts_at, self.ctx.services.timezone)
        return Finish.with_text(self.t("moved", when=when, n=told))
