"""A line back: whatever a family member writes reaches their contact volunteer, and is answered.

    FamilyLine  (family; catches any text sent outside a dialog, and voice/pictures)
        the words are stored (FamilyMessage), forwarded to the contact volunteer with the
        household named (to the township's coordinators when there is none), and logged;
        "我想聊聊" / "call me" also makes a call task (Task kind "call_family").
    FamilyReply  (volunteers, coordinators):  pick → compose → confirm
        a written reply goes to the family (never in quiet hours), or "I called" is recorded.

Answered means (one definition, also used by bot/care/family_line.py): a reply or a call recorded
here; the call task closed; or a home visit, phone call or WeChat contact recorded for the
household after the message came in. Messages not answered in `[outreach] answer_within_hours`
go to the township's coordinators. A reply through Warmline counts as a contact (a Visit of kind
"message", source "reply"); "I called" as a phone contact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.form import Form
from dialogs.engine.recording import SAVE_WORDS, RecordForm, Records, confirm_options
from dialogs.engine.types import Option, Reply
from dialogs.parsing import clean_text
from domain.outreach import address_of
from storage.models import FamilyMessage, HouseholdMember, Person

MEDIA_EVENTS = ("voice", "image", "video", "shortvideo", "location", "link", "file")
MAX_STORED = 20_000  # a message longer than this is kept up to here (and the family told)
PREVIEW = 500
MAX_REPLY = 1000
MAX_LISTED = 20


def _t(ctx: Any, key: str, **values: Any) -> str:
    return ctx.t(f"family_line.{key}", **values)


async def receive_words(ctx: Any, text: str, event: str | None = None) -> str:
    """Keep a family member's words, forward them, and say so: the line back, used wherever a
    family member writes (here, and words typed inside a family dialog). Returns the
    acknowledgment to show them."""
    person = ctx.person
    assert person is not None
    now = ctx.now()
    found = await ctx.book.membership(person.id)
    member, household = found if found else (None, None)
    words = text.strip()
    media = event in MEDIA_EVENTS
    stored = words[:MAX_STORED] if words else _t(ctx, f"media_{event}" if media else "media_file")
    if media and words:  # a voice message WeChat recognised: keep both
        stored = f"{_t(ctx, f'media_{event}')} {stored}"
    lowered = words.lower()
    wants_call = bool(words) and any(w in lowered for w in ctx.services.outreach.call_words)
    received = await ctx.book.receive_family_words(text=stored, wants_call=wants_call,
                                                   call_reason=_t(ctx, "call_reason"), channel=ctx.channel)
    message, recipients, volunteer = received.message, received.recipients, received.volunteer
    label = await ctx.book.label(household) if household else "—"
    who = address_of(member, person)
    who = who if who == person.name else f"{who}（{person.name}）"
    preview = stored if len(stored) <= PREVIEW else stored[:PREVIEW] + _t(ctx, "cut")
    lines = [_t(ctx, "forward", label=label, who=who,
                when=ctx.services.local(now).strftime("%m-%d %H:%M")), preview]
    if wants_call:
        lines.append(_t(ctx, "forward_call"))
    if media:
        lines.append(_t(ctx, "forward_media"))
    lines.append(_t(ctx, "forward_footer"))
    forward = Reply("\n".join(lines), (Option(_t(ctx, "reply_option"),
                                          FamilyReply.start_value(message_id=message.id)),))
    for recipient in recipients:
        await ctx.notify(recipient.id, forward, kind="family_message",
                         key=f"family_message:{message.id}:{recipient.id}")
    await ctx.audit("write", "family_message", message.id, message.household_id,
                    "wants_call" if wants_call else None)
    name = volunteer.name if volunteer else _t(ctx, "the_association")
    key = "received_call" if wants_call else ("received_media" if media else "received")
    reply = _t(ctx, key, volunteer=name)
    if len(words) > MAX_STORED:
        reply += "\n" + _t(ctx, "too_long", limit=MAX_STORED)
    return reply


@dataclass
class LineForm(Form):
    """What started the line: the words as normalised and as typed, or a media event."""

    text: str | None = None
    raw: str | None = None
    event: str | None = None


@dataclass
class ReplyForm(RecordForm):
    message_id: int | None = None
    mode: str | None = None  # reply | call
    reply: str | None = None
    can_write: bool = False


class FamilyLine(Dialog):
    name = "family_line"
    roles = frozenset({"family"})
    keywords = ("留言", "给志愿者留言", "/message")
    catches_free_text = True
    events = MEDIA_EVENTS
    states = ["text"]
    transitions: list[dict[str, Any]] = []
    form_type = LineForm
    form: LineForm

    async def ask_text(self) -> Reply | Finish:
        if self.form.text or self.form.event:
            raw = clean_text(self.form.raw or "")
            return await self._receive(raw or (self.form.text or ""), self.form.event)
        facts = await self._volunteer_name()
        return Reply(self.t("ask_text", volunteer=facts))

    async def on_text(self, answer: Answer) -> Invalid | Finish:
        text = clean_text(answer.raw) or answer.text
        if not text.strip():
            return Invalid(self.t("empty"))
        return await self._receive(text, None)

    async def _volunteer_name(self) -> str:
        assert self.ctx.person is not None
        found = await self.ctx.book.membership(self.ctx.person.id)
        volunteer = await self.ctx.book.volunteer_of(found[1].id if found else None)
        return volunteer.name if volunteer else self.ctx.t("family_prefs.your_volunteer")

    async def _receive(self, text: str, event: str | None) -> Finish:
        return Finish.with_text(await receive_words(self.ctx, text, event))


class FamilyReply(Records):
    """A volunteer (or coordinator) answers a family's message: in writing, or 'I called'."""

    name = "family_reply"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("回复家属", "家属留言", "/familyreply")
    save_words = SAVE_WORDS | {"发送"}
    states = ["pick", "compose", "confirm"]
    transitions = [
        {"trigger": "next", "source": "pick", "dest": "compose"},
        {"trigger": "next", "source": "compose", "dest": "confirm"},
        {"trigger": "edit", "source": "confirm", "dest": "compose"},
    ]
    form_type = ReplyForm
    form: ReplyForm

    def _me(self) -> Person:
        assert self.ctx.person is not None
        return self.ctx.person

    async def _message(self, message_id: int) -> FamilyMessage | None:
        return await self.ctx.book.family_message(message_id)

    async def ask_pick(self) -> Reply | str | Finish:
        if self.form.message_id:
            if await self._message(int(self.form.message_id)) is not None:
                return "next"
            self.form.message_id = None
        rows = await self.ctx.book.waiting_family_messages(MAX_LISTED)
        if not rows:
            return Finish.with_text(self.t("none_waiting"))
        households = await self.ctx.book.households_by_id(
            {m.household_id for m, _n in rows if m.household_id is not None})
        labels = await self.ctx.book.labels(households)
        options = []
        for message, name in rows:
            code = labels.get(message.household_id or 0, "").split(" ")[0]
            text = message.text.replace("\n", " ")
            text = text if len(text) <= 20 else text[:20] + "…"
            when = self.ctx.services.local(message.received_at).strftime("%m-%d")
            options.append(Option(f"{code} {name} · {when} · {text}", str(message.id)))
        return Reply(self.t("list_title", n=len(rows)), tuple(options))

    async def on_pick(self, answer: Answer) -> str | Invalid:
        if answer.value is None or not answer.value.isdigit() or await self._message(int(answer.value)) is None:
            return Invalid(self.t("pick"))
        self.form.message_id = int(answer.value)
        return "next"

    async def _context(self) -> tuple[FamilyMessage, Person, HouseholdMember | None, str]:
        message = await self._message(int(self.form.message_id))
        assert message is not None  # checked in pick; scope cannot shrink within one step
        person, member = await self.ctx.book.writer_of(message)
        return message, person, member, address_of(member, person)

    async def ask_compose(self) -> Reply:
        message, person, _member, address = await self._context()
        households = await self.ctx.book.households_by_id(
            {message.household_id} if message.household_id is not None else set())
        label = (await self.ctx.book.labels(households))[households[0].id] if households else "—"
        thread = await self.ctx.book.family_thread(message)
        await self.ctx.audit("read", "family_message", message.id, message.household_id)
        lines = [self.t("thread_title", label=label, who=address)]
        for item in reversed(thread):
            lines.append(f"{self.ctx.services.local(item.received_at).strftime('%m-%d %H:%M')}  {item.text}")
        if message.answered_at is not None:
            lines.append(self.t("already_answered"))
        can_write = await self.ctx.book.may_answer(person.id)
        self.form.can_write = can_write
        lines.append(self.t("ask_compose" if can_write else "cannot_write", who=address))
        return Reply("\n".join(lines), (Option(self.t("called"), "called"),))

    async def on_compose(self, answer: Answer) -> str | Invalid:
        if answer.value == "called" or answer.text in {"已电话联系", "打过电话了"}:
            self.form.mode = "call"
            self.form.reply = None
            return "next"
        if not self.form.can_write:
            return Invalid(self.t("cannot_write_short"))
        text = (clean_text(answer.raw) or answer.text).strip()
        if not text:
            return Invalid(self.t("empty"))
        if len(text) > MAX_REPLY:
            return Invalid(self.t("too_long", limit=MAX_REPLY))
        self.form.mode = "reply"
        self.form.reply = text
        return "next"

    async def confirm_text(self) -> str:
        _message, _person, _member, address = await self._context()
        if self.form.mode == "call":
            return self.t("confirm_call", who=address)
        text = self.t("to_family", volunteer=self._me().name, text=(self.form.reply or ""))
        return self.t("confirm_reply", who=address, text=text)

    def confirm_choices(self) -> tuple[Option, ...]:
        save, edit, discard = confirm_options(self.ctx)
        if self.form.mode == "call":
            return (save, discard)
        return (Option(self.t("send"), "save"), edit, discard)

    async def change(self) -> str | Invalid:
        if self.form.mode == "reply":
            return "edit"
        return Invalid(self.ctx.t("engine.invalid_choice"))  # a call is recorded or discarded

    async def save(self) -> Finish:
        return await self._save()

    async def _save(self) -> Finish:
        message, person, _member, address = await self._context()
        me = self._me()
        mode = self.form.mode
        assert message.household_id is not None
        if mode == "reply":
            text = self.t("to_family", volunteer=me.name, text=(self.form.reply or ""))
            if not await self.ctx.book.reply_to_family(message, person.id, text):
                return Finish.with_text(self.t("not_sent", who=address))
        await self.ctx.book.record_family_answer(message, "reply" if mode == "reply" else "call")
        await self.ctx.audit("write", "family_message", message.id, message.household_id, f"answered:{mode}")
        return Finish.with_text(self.t("sent" if mode == "reply" else "call_saved", who=address))
