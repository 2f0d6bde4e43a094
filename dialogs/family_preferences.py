"""我的消息设置 — what a family member wants to receive, and 退订 (stop everything at once).

    FamilyPreferences:  show → festivals → birthday → parents_day → activities → channel → confirm
                        show --stop--> (退订)      show --resume--> (family_consent)
    FamilyStop:         one step, from anywhere: 退订 / TD / STOP / 取消订阅

The questions (festivals, own birthday, Mother's or Father's Day, activities) are written once in
`PreferenceSteps` and shared by the consent dialog and the volunteer's in-person consent. Mother's
Day is asked only of mothers and Father's Day only of fathers, each on its own and gently: the day
can hurt, and "no" is offered as a plain, equal choice. A question about a birthday Warmline does
not know is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from dialogs.common import HouseholdForm, read_yes_no
from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.form import Form
from dialogs.engine.recording import Records, confirm_options
from dialogs.engine.types import Option, Reply
from dialogs.family_line import receive_words
from dialogs.parsing import clean_text
from domain.outreach import (
    confirmed,
)
from storage.models import Person

MIN_WORDS = 6  # typed words this long where a choice was expected are a message, not a typo
PREFERENCE_FIELDS = ("festivals", "own_birthday", "mothers_day", "fathers_day", "activities")
CHANNEL_NAMES = {"wechat": "微信公众号", "telegram": "Telegram", "console": "终端"}


def chain(states: list[str]) -> list[dict[str, str]]:
    return [{"trigger": "next", "source": a, "dest": b} for a, b in pairwise(states)]


def read_choice(answer: Answer) -> bool | None:
    """Yes or no, from a button or words such as 愿意 / 不用了."""
    value = read_yes_no(answer)
    if value is not None:
        return value
    text = answer.text.lower()
    if text.startswith(("不", "别")) or text in {"算了", "不用了"}:
        return False
    if text.startswith(("愿意", "可以", "行", "好")):
        return True
    return None


@dataclass
class FamilyForm(HouseholdForm):
    """The answers of the family's consent and preference dialogs (and a volunteer's proxy)."""

    relation: str | None = None
    has_birthday: bool = False
    volunteer: str | None = None
    festivals: bool | None = None
    own_birthday: bool | None = None
    mothers_day: bool | None = None
    fathers_day: bool | None = None
    activities: bool | None = None
    channel: str | None = None
    mode: str | None = None  # consent: new | proxy | resume
    consent_id: int | None = None
    member_person_id: int | None = None
    member_name: str | None = None
    address: str | None = None
    sms_phone: str | None = None  # proxy consent for a basic phone


@dataclass
class StopForm(Form):
    volunteer: str | None = None


class PreferenceSteps(Dialog):
    """The preference questions. A subclass lists the states it uses and sets `proxy` when a
    volunteer answers for the family (the questions then speak of them, not to them)."""

    form_type = FamilyForm
    form: FamilyForm

    def _take_facts(self, facts: dict[str, object]) -> None:
        """What `member_facts` knows: relation, birthday known, household, volunteer's name."""
        for key, value in facts.items():
            setattr(self.form, key, value)

    proxy: bool = False

    def pt(self, key: str, **values: Any) -> str:
        """A question in the right voice: to the member, or (proxy) about them."""
        values.setdefault("volunteer", self.form.volunteer or self.ctx.t("family_prefs.your_volunteer"))
        values.setdefault("name", (self.form.member_name or ""))
        prefix = "proxy_" if self.proxy else ""
        return self.ctx.t(f"family_prefs.{prefix}{key}", **values)

    def yes_no(self, yes: str = "yes", no: str = "no") -> tuple[Option, Option]:
        return (Option(self.ctx.t(f"family_prefs.{yes}"), "yes"), Option(self.ctx.t(f"family_prefs.{no}"), "no"))

    async def invalid(self, answer: Answer, message: str) -> Invalid:
        """A choice was expected. If a family member wrote real words instead, they are a message
        to their volunteer, not a typo: keep and forward them, then ask again."""
        words = (clean_text(answer.raw) or answer.text).strip()
        person = self.ctx.person
        if person is not None and person.role == "family" and len(words) >= MIN_WORDS:
            return Invalid(f"{await receive_words(self.ctx, words)}\n{message}")
        return Invalid(message)

    async def _answer(self, field: str, answer: Answer) -> str | Invalid:
        value = read_choice(answer)
        if value is None:
            return await self.invalid(answer, self.ctx.t("family_prefs.pick_yes_no"))
        setattr(self.form, field, value)
        return "next"

    async def ask_festivals(self) -> Reply:
        return Reply(self.pt("ask_festivals"), self.yes_no())

    async def on_festivals(self, answer: Answer) -> str | Invalid:
        return await self._answer("festivals", answer)

    async def ask_birthday(self) -> Reply | str:
        if not self.form.has_birthday:
            self.form.own_birthday = False
            return "next"
        return Reply(self.pt("ask_birthday"), self.yes_no())

    async def on_birthday(self, answer: Answer) -> str | Invalid:
        return await self._answer("own_birthday", answer)

    def _parents_day(self) -> str | None:
        return {"mother": "mothers_day", "father": "fathers_day"}.get(self.form.relation or "")

    async def ask_parents_day(self) -> Reply | str:
        field = self._parents_day()
        if field is None:
            self.form.mothers_day = self.form.fathers_day = False
            return "next"
        return Reply(self.pt(f"ask_{field}"), self.yes_no("want_greeting", "quiet_day"))

    async def on_parents_day(self, answer: Answer) -> str | Invalid:
        field = self._parents_day()
        if field is None:
            return "next"
        other = "fathers_day" if field == "mothers_day" else "mothers_day"
        setattr(self.form, other, False)
        return await self._answer(field, answer)

    async def ask_activities(self) -> Reply:
        return Reply(self.pt("ask_activities"), self.yes_no())

    async def on_activities(self, answer: Answer) -> str | Invalid:
        return await self._answer("activities", answer)

    def preference_lines(self) -> list[str]:
        t = self.ctx.t
        lines = [t("family_prefs.s_festivals", v=self._word(self.form.festivals))]
        if self.form.has_birthday:
            lines.append(t("family_prefs.s_birthday", v=self._word(self.form.own_birthday)))
        field = self._parents_day()
        if field is not None:
            lines.append(t(f"family_prefs.s_{field}", v=self._word(getattr(self.form, field))))
        lines.append(t("family_prefs.s_activities", v=self._word(self.form.activities)))
        if self.form.channel:
            lines.append(t("family_prefs.s_channel", v=CHANNEL_NAMES.get(self.form.channel, self.form.channel)))
        return lines

    def _word(self, value: object) -> str:
        return self.ctx.t("family_prefs.on" if value else "family_prefs.off")

    def chosen(self) -> dict[str, bool]:
        return {f: bool(getattr(self.form, f)) for f in PREFERENCE_FIELDS}

    async def load_preferences(self, person_id: int) -> None:
        """Start from what the member chose before (defaults: festivals yes, the rest no)."""
        preference = await self.ctx.book.preference_of(person_id)
        defaults = {"festivals": True, "own_birthday": False, "mothers_day": False,
                    "fathers_day": False, "activities": False}
        for field in PREFERENCE_FIELDS:
            setattr(self.form, field, bool(getattr(preference, field)) if preference is not None else defaults[field])
        if preference is not None and preference.channel:
            self.form.channel = preference.channel


class FamilyPreferences(PreferenceSteps, Records):
    name = "family_preferences"
    roles = frozenset({"family"})
    keywords = ("设置", "消息设置", "我的设置", "/settings", "settings")
    states = ["show", "festivals", "birthday", "parents_day", "activities", "channel", "confirm"]
    transitions = [*chain(states), {"trigger": "edit", "source": "confirm", "dest": "festivals"}]
    can_discard = False

    def _me(self) -> Person:
        assert self.ctx.person is not None
        return self.ctx.person

    async def ask_show(self) -> Reply | Finish:
        me = self._me()
        self._take_facts(await self.ctx.book.member_facts(me.id))
        consent = await self.ctx.book.current_consent(me.id)
        if not confirmed(consent):
            return Finish((), then={"start": "family_consent"})
        preference = await self.ctx.book.preference_of(me.id)
        if preference is not None and preference.stopped_at is not None:
            return Reply(self.t("stopped_now"), (Option(self.t("resume"), "resume"),
                                                 Option(self.t("keep"), "keep")))
        await self.load_preferences(me.id)
        text = "\n".join([self.t("current"), *self.preference_lines(), self.t("ask_show")])
        return Reply(text, (Option(self.t("change"), "change"), Option(self.t("stop"), "stop"),
                            Option(self.t("keep"), "keep")))

    async def on_show(self, answer: Answer) -> str | Invalid | Finish:
        choice = answer.value or {"修改": "change", "改": "change", "恢复": "resume",
                                  "不改": "keep", "不改了": "keep"}.get(answer.text)
        if choice == "resume":
            return Finish((), then={"start": "family_consent"})
        if choice == "stop":
            return Finish((), then={"start": "family_stop"})
        if choice == "keep":
            return Finish.with_text(self.t("kept"))
        if choice == "change":
            return "next"
        return await self.invalid(answer, self.ctx.t("engine.invalid_choice"))

    async def _channels(self) -> list[str]:
        return await self.ctx.book.channels_of(self._me().id)

    async def ask_channel(self) -> Reply | str:
        channels = await self._channels()
        if len(channels) < 2:
            self.form.channel = channels[0] if channels else self.form.channel
            return "next"
        return Reply(self.t("ask_channel"), tuple(Option(CHANNEL_NAMES.get(c, c), c) for c in channels))

    async def on_channel(self, answer: Answer) -> str | Invalid:
        if answer.value not in await self._channels():
            return await self.invalid(answer, self.ctx.t("engine.invalid_choice"))
        self.form.channel = answer.value
        return "next"

    def summary(self) -> str:
        return "\n".join([self.t("summary"), *self.preference_lines()])

    def confirm_choices(self) -> tuple[Option, ...]:
        return confirm_options(self.ctx)[:2]  # save or change: one's own settings are not discarded

    async def unclear(self, answer: Answer) -> Invalid:
        return await self.invalid(answer, self.ctx.t("engine.invalid_choice"))

    async def save(self) -> Finish:
        me = self._me()
        now = self.ctx.now()
        await self.ctx.book.save_preference(me.id, now, channel=self.form.channel, **self.chosen())
        await self.ctx.audit("write", "preference", me.id, self.form.household_id)
        return Finish.with_text(self.t("saved"))


class FamilyStop(Dialog):
    """退订: one word, from anywhere, stops every message at once; 订阅 brings them back."""

    name = "family_stop"
    roles = frozenset({"family", "newcomer"})
    global_keywords = ("退订", "td", "stop", "取消订阅")
    in_menu = False
    states = ["stop"]
    transitions: list[dict[str, Any]] = []
    form_type = StopForm
    form: StopForm

    async def ask_stop(self) -> Finish:
        person = self.ctx.person
        if person is None:  # someone not registered: nothing is being sent to them
            return Finish.with_text(self.t("nothing_to_stop"))
        now = self.ctx.now()
        newly = await self.ctx.book.stop_all(person.id, now)
        facts = await self.ctx.book.member_facts(person.id)
        volunteer = self.form.volunteer or facts["volunteer"]
        if newly:
            await self.ctx.audit("write", "preference", person.id, facts["household_id"], "stopped")
            if volunteer:
                found = await self.ctx.book.membership(person.id)
                helper = await self.ctx.book.volunteer_of(found[1].id if found else None)
                if helper is not None:  # so a person, not a machine, keeps in touch
                    await self.ctx.notify(helper.id, Reply(self.t("tell_volunteer", name=person.name)),
                                          kind="notice", key=f"stopped:{person.id}:{now.isoformat()}")
        who = volunteer or self.t("your_volunteer")
        return Finish.with_text(self.t("stopped" if newly else "already_stopped", volunteer=who))

    async def on_stop(self, answer: Answer) -> Finish:  # never reached: the dialog ends at once
        return await self.ask_stop()
