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
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import select

from dialogs.engine.catalog import has
from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.types import Option, Reply
from dialogs.invitations import (
    ACTIVITY_TYPES,
    CUSTOM,
    SendReport,
    SendWindow,
    Status,
    preview,
    send_invitations,
    type_name,
    when_text,
)
from dialogs.parsing import chinese_number, normalize, parse_when
from storage.audience import (
    AudienceKind,
    AudienceNotAllowed,
    activity_township,
    audiences_for,
    checked_audience,
    needs_township_choice,
)
from storage.models import Activity, Person, Township
from storage.queries import household_labels, households_for

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


async def create_activity(ctx: Any, person: Person, d: dict[str, Any], *,
                          send_at: datetime | None) -> tuple[Activity, SendReport | None]:
    """Save a planned activity (audience checked against the sender's scope once more), and send
    its invitations now unless `send_at` schedules them. Raises AudienceNotAllowed."""
    audience = checked_audience(person, d["audience"])
    now = ctx.now()
    activity = Activity(
        township_id=activity_township(person, audience), created_by_id=person.id,
        type=d["type"], title=d["title"], starts_at=datetime.fromisoformat(d["starts_at"]),
        place=d.get("place"), capacity=d.get("capacity"), audience=audience,
        message=d.get("message"), status=Status.SCHEDULED if send_at else Status.DRAFT,
        send_at=send_at, created_at=now)
    ctx.session.add(activity)
    await ctx.session.flush()
    await ctx.audit("write", "activity", activity.id, None)
    if send_at is not None:
        return activity, None
    return activity, await send_invitations(ctx.session, activity, now, SendWindow.of(ctx.services))


def channel_counts(ctx: Any, by_channel: dict[str, int]) -> str:
    """'Telegram 12，微信 30，无法联系 2' in a fixed channel order."""
    order = [c for c in CHANNELS if c in by_channel] + sorted(set(by_channel) - set(CHANNELS))
    return "，".join(f"{channel_name(ctx, c)} {by_channel[c]}" for c in order)


def channel_name(ctx: Any, channel: str) -> str:
    key = f"activity_create.channel_{channel}"
    return ctx.t(key) if has(key, ctx.locale) else channel


class ActivityCreate(Dialog):
    name = "activity_create"
    roles = frozenset({"coordinator", "admin"})
    keywords = ("/activity", "/newactivity", "发布活动", "新活动")
    states = [*STEPS, "preview", "send_at", "pick_field"]
    transitions = [
        *({"trigger": "next", "source": a, "dest": b} for a, b in pairwise([*STEPS, "preview"])),
        {"trigger": "review", "source": [*STEPS, "send_at"], "dest": "preview"},
        {"trigger": "schedule", "source": "preview", "dest": "send_at"},
        {"trigger": "edit", "source": "preview", "dest": "pick_field"},
        *({"trigger": f"goto_{f}", "source": "pick_field", "dest": f} for f in EDITABLE),
    ]

    def _person(self) -> Person:
        assert self.ctx.person is not None
        return self.ctx.person

    def _done(self) -> str:
        return "review" if self.data.get("editing") else "next"

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
        self.data["type"] = kind
        return self._done()

    # title
    async def ask_title(self) -> Reply:
        kind = self.data["type"]
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
        self.data["title"] = text
        return self._done()

    # when
    async def ask_when(self) -> Reply:
        return Reply(self.t("ask_when"))

    async def on_when(self, answer: Answer) -> str | Invalid:
        found = read_when(answer.text, self.ctx.services)
        if isinstance(found, str):
            return Invalid(self.t(found))
        self.data["starts_at"] = found.isoformat()
        if self.data.get("send_at") and datetime.fromisoformat(self.data["send_at"]) >= found:
            self.data.pop("send_at")
        return self._done()

    # place
    async def ask_place(self) -> Reply:
        return Reply(self.t("ask_place"), (Option(self.t("no_place"), ""),))

    async def on_place(self, answer: Answer) -> str | Invalid:
        text = "" if answer.value == "" else normalize(answer.clean)
        if len(text) > MAX_PLACE:
            return Invalid(self.t("too_long", limit=MAX_PLACE))
        self.data["place"] = text or None
        return self._done()

    # capacity
    async def ask_capacity(self) -> Reply:
        # no buttons: a typed "1" must mean one place, not the first button
        return Reply(self.t("ask_capacity"))

    async def on_capacity(self, answer: Answer) -> str | Invalid:
        number = read_capacity(answer.text)
        if number is False:
            return Invalid(self.t("bad_capacity"))
        self.data["capacity"] = number
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
        self.data["audience"] = {"kind": answer.value}
        self.data.pop("household_labels", None)
        return "next"  # township and households ask only what this audience needs

    # township (admins, township-bound audiences)
    async def ask_township(self) -> Reply | str:
        if not needs_township_choice(self._person(), self.data["audience"]["kind"]):
            return "next"
        townships = list(await self.ctx.session.scalars(select(Township).order_by(Township.id)))
        return Reply(self.t("ask_township"), tuple(Option(t.name, str(t.id)) for t in townships))

    async def on_township(self, answer: Answer) -> str | Invalid:
        township = None
        if answer.value is not None and answer.value.isdigit():
            township = await self.ctx.session.get(Township, int(answer.value))
        if township is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["audience"]["township_id"] = township.id
        return "next"

    # households (chosen households)
    async def ask_households(self) -> Reply | str | Finish:
        if self.data["audience"]["kind"] != AudienceKind.HOUSEHOLDS:
            return self._done()
        households = await households_for(self.ctx.session, self._person())
        if not households:
            return Finish.with_text(self.ctx.t("common.no_households"))
        labels = await household_labels(self.ctx.session, households[:MAX_LISTED])
        self.data["listing"] = [h.id for h in households[:MAX_LISTED]]
        lines = [self.t("ask_households")]
        lines += [f"{i}. {labels[h.id]}" for i, h in enumerate(households[:MAX_LISTED], start=1)]
        if len(households) > MAX_LISTED:
            lines.append(self.t("more_households", n=len(households) - MAX_LISTED))
        return Reply("\n".join(lines))

    async def on_households(self, answer: Answer) -> str | Invalid:
        visible = {h.code.upper(): h for h in await households_for(self.ctx.session, self._person())}
        by_id = {h.id: h for h in visible.values()}
        listing = self.data.get("listing") or []
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
        self.data["audience"]["household_ids"] = chosen
        self.data["household_codes"] = [by_id[i].code for i in chosen]
        self.data.pop("listing", None)
        return self._done()

    # message
    async def ask_message(self) -> Reply:
        return Reply(self.t("ask_message"), (Option(self.t("no_message"), ""),))

    async def on_message(self, answer: Answer) -> str | Invalid:
        text = "" if answer.value == "" else answer.clean.strip()
        if len(text) > MAX_MESSAGE:
            return Invalid(self.t("too_long", limit=MAX_MESSAGE))
        self.data["message"] = text or None
        return self._done()

    # preview
    async def _township_name(self, township_id: int | None) -> str:
        if township_id is None:
            return ""
        township = await self.ctx.session.get(Township, township_id)
        return township.name if township else ""

    async def audience_text(self) -> str:
        audience = self.data["audience"]
        kind = audience["kind"]
        if kind == AudienceKind.HOUSEHOLDS:
            return self.t("s_aud_households", v="、".join(self.data.get("household_codes", [])))
        township_id = audience.get("township_id", self._person().township_id)
        return self.t(f"s_aud_{kind}", township=await self._township_name(township_id))

    async def summary(self) -> str:
        d = self.data
        tz = self.ctx.services.timezone
        lines = [
            self.t("summary_title"),
            self.t("s_type", v=type_name(d["type"], self.ctx.locale)),
            self.t("s_title", v=d["title"]),
            self.t("s_when", v=when_text(datetime.fromisoformat(d["starts_at"]), tz)),
            self.t("s_place", v=d.get("place") or self.t("no_place")),
            self.t("s_capacity", v=d.get("capacity") or self.t("no_limit")),
            self.t("s_audience", v=await self.audience_text()),
            self.t("s_message", v=d.get("message") or self.t("no_message")),
        ]
        return "\n".join(lines)

    async def ask_preview(self) -> Reply:
        self.data.pop("editing", None)
        try:
            report = await preview(self.ctx.session, self._person(), self.data["audience"],
                                   self.data["type"])
        except AudienceNotAllowed:
            return Reply(self.t("out_of_scope"), (Option(self.t("edit"), "edit"),
                                                  Option(self.ctx.t("common.discard"), "discard")))
        self.data["recipients"] = report.invited
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
        if choice in {"send", "schedule"} and not self.data.get("recipients"):
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
        if found >= datetime.fromisoformat(self.data["starts_at"]):
            return Invalid(self.t("send_after_start"))
        return await self.save(send_at=found)

    # editing
    async def ask_pick_field(self) -> Reply:
        return Reply(self.ctx.t("common.which_field"),
                     tuple(Option(self.t(f"field_{f}"), f) for f in EDITABLE))

    async def on_pick_field(self, answer: Answer) -> str | Invalid:
        if answer.value not in EDITABLE:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["editing"] = True
        return f"goto_{answer.value}"

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
