"""发布活动 — a coordinator (or the county) plans a themed activity and invites people.

    type → title → when → place → capacity → audience → township → households → message → preview
    preview --send--> (saved, invitations queued)      preview --schedule--> send_at → (saved)
    preview --edit--> pick_field --goto_<field>--> <field> --review--> preview
`township` is asked only of an admin choosing a township-bound audience; `households` only for
"chosen households". The preview counts recipients per channel before anything is saved; the
audience is checked against the sender's scope in `storage.audience` (the one place that rule
lives) both here and again when a scheduled send goes out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from dialogs.engine.catalog import has
from dialogs.engine.context import StepContext
from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.recording import RecordForm, Records, change_one_field
from dialogs.engine.types import Option, Reply
from dialogs.parsing import chinese_number, normalize, parse_when
from domain.invitations import (
    ACTIVITY_TYPES,
    CUSTOM,
    SendReport,
    type_name,
    when_text,
)
from storage.audience import (
    AudienceKind,
    AudienceNotAllowed,
    audiences_for,
    needs_township_choice,
)
from storage.models import Activity, Person

STEPS = ["type", "title", "when", "place", "capacity", "audience", "township", "households",
         "message"]
EDITABLE = ["type", "title", "when", "place", "capacity", "audience", "message"]
MAX_TITLE = 100
MAX_PLACE = 200
MAX_MESSAGE = 1000
MAX_CAPACITY = 10_000
MAX_AHEAD = timedelta(days=366)
MAX_LISTED = 60
CHANNELS = ("telegram", "wechat", "wecom", "console", "none")


def read_when(text: str, services: Any) -> datetime | str:
    """A coming local date and time as an aware UTC instant, or the catalogue key of the problem."""
    day, at = parse_when(text, services.today())
    if day is None:
        return "bad_when"
    if at is None:
        return "need_time"
    instant = datetime.combine(day, at, services.timezone).astimezone(UTC)
    if instant <= services.now():
        return "past_when"
    if instant - services.now() > MAX_AHEAD:
        return "too_far"
    return instant


def read_capacity(text: str) -> int | bool | None:
    """Places as typed ("30", "三十人", "不限" = no limit → None), or False when unreadable."""
    text = normalize(text).removesuffix("人").removesuffix("个").strip()
    if text in {"不限", "不限制", "没有", "无", "none", "no"}:
        return None
    number = int(text) if text.isdigit() else chinese_number(text)
    if number is None or not 1 <= number <= MAX_CAPACITY:
        return False
    return number


async def create_activity(ctx: StepContext, person: Person, d: Mapping[str, Any], *,
                          send_at: datetime | None) -> tuple[Activity, SendReport | None]:
    """Save a planned activity (audience checked against the sender's scope once more), and send
    its invitations now unless `send_at` schedules them. Raises AudienceNotAllowed. The chat
    dialog and the web console both save through here, as `person` (the step's sender)."""
    assert ctx.person is not None and ctx.person.id == person.id
    activity = await ctx.book.create_activity(
        activity_type=d["type"], title=d["title"], starts_at=datetime.fromisoformat(d["starts_at"]),
        place=d.get("place"), capacity=d.get("capacity"), audience=d["audience"],
        message=d.get("message"), send_at=send_at)
    if send_at is not None:
        return activity, None
    return activity, await ctx.book.send_invitations(activity)


def channel_counts(ctx: Any, by_channel: dict[str, int]) -> str:
    """'Telegram 12，微信 30，无法联系 2' in a fixed channel order."""
    order = [c for c in CHANNELS if c in by_channel] + sorted(set(by_channel) - set(CHANNELS))
    return "，".join(f"{channel_name(ctx, c)} {by_channel[c]}" for c in order)


def channel_name(ctx: Any, channel: str) -> str:
    key = f"activity_create.channel_{channel}"
    return ctx.t(key) if has(key, ctx.locale) else channel


@dataclass
class ActivityForm(RecordForm):
    type: str | None = None
    title: str | None = None
    starts_at: str | None = None  # ISO date and time
    place: str | None = None
    capacity: int | None = None
    audience: dict[str, Any] | None = None  # kind, township_id, household_ids (storage/audience.py)
    household_codes: list[str] | None = None
    listing: list[int] | None = None  # the households listed for choosing by number
    message: str | None = None
    send_at: str | None = None
    recipients: int | None = None


class ActivityCreate(Records):
    name = "activity_create"
    roles = frozenset({"coordinator", "admin"})
    keywords = ("/activity", "/newactivity", "发布活动", "新活动")
    states = [*STEPS, "preview", "send_at", "pick_field"]
    transitions = [
        *({"trigger": "next", "source": a, "dest": b} for a, b in pairwise([*STEPS, "preview"])),
        {"trigger": "schedule", "source": "preview", "dest": "send_at"},
        *change_one_field(EDITABLE, confirm="preview",
                          extra_sources=[s for s in [*STEPS, "send_at"] if s not in EDITABLE]),
    ]
    editable = tuple(EDITABLE)
    form_type = ActivityForm
    form: ActivityForm

    def _person(self) -> Person:
        assert self.ctx.person is not None
        return self.ctx.person

    def _done(self) -> str:
        return self.answered()

    # type
    async def ask_type(self) -> Reply | Finish:
        if not audiences_for(self._person()):
            return Finish.with_text(self.t("no_scope"))
        options = [Option(type_name(k, self.ctx.locale), k) for k in ACTIVITY_TYPES]
        options.append(Option(self.t("custom"), CUSTOM))
        return Reply(self.t("ask_type"), tuple(options))

    async def on_type(self, answer: Answer) -> str | Invalid:
        kind = answer.value if answer.value in (*ACTIVITY_TYPES, CUSTOM) else None
        if kind is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.type = kind
        return self._done()

    # title
    async def ask_title(self) -> Reply:
        kind = self.form.type
        if kind == CUSTOM:
            return Reply(self.t("ask_title_custom"))
        name = type_name(kind, self.ctx.locale)
        return Reply(self.t("ask_title", name=name), (Option(name, name),))

    async def on_title(self, answer: Answer) -> str | Invalid:
        text = normalize(answer.value if answer.value is not None else answer.clean)
        if not text:
            return Invalid(self.t("need_text"))
        if len(text) > MAX_TITLE:
            return Invalid(self.t("too_long", limit=MAX_TITLE))
        self.form.title = text
        return self._done()

    # when
    async def ask_when(self) -> Reply:
        return Reply(self.t("ask_when"))

    async def on_when(self, answer: Answer) -> str | Invalid:
        found = read_when(answer.text, self.ctx.services)
        if isinstance(found, str):
            return Invalid(self.t(found))
        self.form.starts_at = found.isoformat()
        if self.form.send_at and datetime.fromisoformat(self.form.send_at) >= found:
            self.form.send_at = None
        return self._done()

    # place
    async def ask_place(self) -> Reply:
        return Reply(self.t("ask_place"), (Option(self.t("no_place"), ""),))

    async def on_place(self, answer: Answer) -> str | Invalid:
        text = "" if answer.value == "" else normalize(answer.clean)
        if len(text) > MAX_PLACE:
            return Invalid(self.t("too_long", limit=MAX_PLACE))
        self.form.place = text or None
        return self._done()

    # capacity
    async def ask_capacity(self) -> Reply:
        # no buttons: a typed "1" must mean one place, not the first button
        return Reply(self.t("ask_capacity"))

    async def on_capacity(self, answer: Answer) -> str | Invalid:
        number = read_capacity(answer.text)
        if number is False:
            return Invalid(self.t("bad_capacity"))
        self.form.capacity = number
        return self._done()

    # audience
    async def ask_audience(self) -> Reply:
        person = self._person()
        township = await self._township_name(person.township_id)
        return Reply(self.t("ask_audience"), tuple(
            Option(self.t(f"aud_{kind}_{person.role}", township=township), str(kind))
            for kind in audiences_for(person)))

    async def on_audience(self, answer: Answer) -> str | Invalid:
        kinds = [str(k) for k in audiences_for(self._person())]
        if answer.value not in kinds:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.audience = {"kind": answer.value}
        return "next"  # township and households ask only what this audience needs

    # township (admins, township-bound audiences)
    async def ask_township(self) -> Reply | str:
        if not needs_township_choice(self._person(), self.form.audience["kind"]):
            return "next"
        townships = await self.ctx.book.townships()
        return Reply(self.t("ask_township"), tuple(Option(t.name, str(t.id)) for t in townships))

    async def on_township(self, answer: Answer) -> str | Invalid:
        township = None
        if answer.value is not None and answer.value.isdigit():
            township = await self.ctx.book.township(int(answer.value))
        if township is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.audience["township_id"] = township.id
        return "next"

    # households (chosen households)
    async def ask_households(self) -> Reply | str | Finish:
        if self.form.audience["kind"] != AudienceKind.HOUSEHOLDS:
            return self._done()
        households = await self.ctx.book.households()
        if not households:
            return Finish.with_text(self.ctx.t("common.no_households"))
        labels = await self.ctx.book.labels(households[:MAX_LISTED])
        self.form.listing = [h.id for h in households[:MAX_LISTED]]
        lines = [self.t("ask_households")]
        lines += [f"{i}. {labels[h.id]}" for i, h in enumerate(households[:MAX_LISTED], start=1)]
        if len(households) > MAX_LISTED:
            lines.append(self.t("more_households", n=len(households) - MAX_LISTED))
        return Reply("\n".join(lines))

    async def on_households(self, answer: Answer) -> str | Invalid:
        visible = {h.code.upper(): h for h in await self.ctx.book.households()}
        by_id = {h.id: h for h in visible.values()}
        listing = self.form.listing or []
        chosen: list[int] = []
        unknown: list[str] = []
        for part in re.split(r"[,，、;；\s]+", normalize(answer.text)):
            if not part:
                continue
            if part.isdigit() and 1 <= int(part) <= len(listing) and listing[int(part) - 1] in by_id:
                chosen.append(listing[int(part) - 1])
            elif part.upper() in visible:
                chosen.append(visible[part.upper()].id)
            else:
                unknown.append(part)
        if unknown or not chosen:
            return Invalid(self.t("bad_households", v="、".join(unknown[:5]) or answer.text[:20]))
        chosen = sorted(set(chosen))
        self.form.audience["household_ids"] = chosen
        self.form.household_codes = [by_id[i].code for i in chosen]
        self.form.listing = None
        return self._done()

    # message
    async def ask_message(self) -> Reply:
        return Reply(self.t("ask_message"), (Option(self.t("no_message"), ""),))

    async def on_message(self, answer: Answer) -> str | Invalid:
        text = "" if answer.value == "" else answer.clean.strip()
        if len(text) > MAX_MESSAGE:
            return Invalid(self.t("too_long", limit=MAX_MESSAGE))
        self.form.message = text or None
        return self._done()

    # preview
    async def _township_name(self, township_id: int | None) -> str:
        if township_id is None:
            return ""
        township = await self.ctx.book.township(township_id)
        return township.name if township else ""

    async def audience_text(self) -> str:
        audience = self.form.audience
        kind = audience["kind"]
        if kind == AudienceKind.HOUSEHOLDS:
            return self.t("s_aud_households", v="、".join(self.form.household_codes or []))
        township_id = audience.get("township_id", self._person().township_id)
        return self.t(f"s_aud_{kind}", township=await self._township_name(township_id))

    async def summary(self) -> str:
        d = self.form
        tz = self.ctx.services.timezone
        lines = [
            self.t("summary_title"),
            self.t("s_type", v=type_name(d.type or "", self.ctx.locale)),
            self.t("s_title", v=d.title),
            self.t("s_when", v=when_text(datetime.fromisoformat(d.starts_at or ""), tz)),
            self.t("s_place", v=d.place or self.t("no_place")),
            self.t("s_capacity", v=d.capacity or self.t("no_limit")),
            self.t("s_audience", v=await self.audience_text()),
            self.t("s_message", v=d.message or self.t("no_message")),
        ]
        return "\n".join(lines)

    async def ask_preview(self) -> Reply:
        self.editing = False
        try:
            report = await self.ctx.book.audience_preview(self.form.audience, self.form.type)
        except AudienceNotAllowed:
            return Reply(self.t("out_of_scope"), (Option(self.t("edit"), "edit"),
                                                  Option(self.ctx.t("common.discard"), "discard")))
        self.form.recipients = report.invited
        if report.invited == 0:
            return Reply(await self.summary() + "\n" + self.t("nobody"),
                         (Option(self.t("edit"), "edit"), Option(self.ctx.t("common.discard"), "discard")))
        counts = self.t("recipients", n=report.invited, v=channel_counts(self.ctx, report.by_channel))
        if report.by_channel.get("none"):
            counts += "\n" + self.t("unreachable", n=report.by_channel["none"])
        return Reply("\n".join([await self.summary(), counts, self.t("ask_send")]), (
            Option(self.t("send_now"), "send"), Option(self.t("send_later"), "schedule"),
            Option(self.t("edit"), "edit"), Option(self.ctx.t("common.discard"), "discard")))

    async def on_preview(self, answer: Answer) -> str | Invalid | Finish:
        choice = answer.value
        if choice is None:
            text = answer.text.lower()
            choice = {"发送": "send", "现在发送": "send", "定时": "schedule", "修改": "edit",
                      "放弃": "discard"}.get(text)
        if choice == "discard":
            return Finish.with_text(self.ctx.t("common.discarded"))
        if choice == "edit":
            return "edit"
        if choice in {"send", "schedule"} and not self.form.recipients:
            return Invalid(self.t("nobody"))
        if choice == "schedule":
            return "schedule"
        if choice == "send":
            return await self.save(send_at=None)
        return Invalid(self.ctx.t("engine.invalid_choice"))

    # send_at
    async def ask_send_at(self) -> Reply:
        return Reply(self.t("ask_send_at"))

    async def on_send_at(self, answer: Answer) -> Invalid | Finish:
        found = read_when(answer.text, self.ctx.services)
        if isinstance(found, str):
            return Invalid(self.t(found))
        if found >= datetime.fromisoformat(self.form.starts_at):
            return Invalid(self.t("send_after_start"))
        return await self.save(send_at=found)

    # saving
    async def save(self, *, send_at: datetime | None) -> Finish:
        try:
            _activity, report = await create_activity(self.ctx, self._person(), self.data, send_at=send_at)
        except AudienceNotAllowed:
            return Finish.with_text(self.t("out_of_scope"))
        if report is None:
            assert send_at is not None
            return Finish.with_text(self.t("scheduled", when=when_text(send_at, self.ctx.services.timezone)))
        return Finish.with_text(self.t("sent", n=report.invited,
                                       v=channel_counts(self.ctx, report.by_channel)))
