"""Consent: a family member hears in plain words who sends what, how often, and how to stop.

    FamilyWelcome  (following the Official Account, or scanning its code)
        newcomer → welcome, then registration with a family invite code
        family   → welcome back, then consent if there is none in force
    FamilyConsent:  intro → festivals → birthday → parents_day → activities → confirm
        intro: a new consent | confirming one a volunteer recorded in person | resuming after 退订
    ProxyConsent (volunteers):  household → member → read → reach → phone → festivals → … → confirm
        reach: the member's own chat app (they confirm later) | 短信 to a basic phone (phone asked)

The consent records who, when, on which channel, and the version of the words they were shown
(`wording_version` sits beside the words in the catalogue: change one, change the other). A
consent a volunteer records face to face is marked as such (recorded_by) and no message goes out
on it until the family confirms it themselves, the first time they reach Warmline — except for
a member who has only a basic phone: they cannot confirm in a chat, so the volunteer's record
stands as confirmed, and the first SMS (the `consent_notice` template, when approved) tells them
what they will get and that TD stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dialogs.common import ChoosesHousehold
from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.form import Form
from dialogs.engine.recording import Records
from dialogs.engine.types import Option, Reply
from dialogs.family_preferences import PreferenceSteps, chain, read_choice
from dialogs.parsing import normalize
from domain.outreach import (
    IN_PERSON,
    RELATIONS,
    SMS,
    address_of,
    confirmed,
)
from storage.models import HouseholdMember, Person

PREF_STATES = ["festivals", "birthday", "parents_day", "activities"]


def wording(ctx: Any, *, address: str, volunteer: str) -> str:
    """The consent words, with the program's real quiet hours in them."""
    start, end = ctx.services.quiet_hours
    return ctx.t("family_consent.wording", address=address, volunteer=volunteer,
                 start=start.strftime("%H:%M"), end=end.strftime("%H:%M"))


def relation_name(ctx: Any, relation: str | None) -> str:
    return ctx.t(f"family_prefs.relation_{relation if relation in RELATIONS else 'other'}")


def mobile_number(text: str) -> str | None:
    """A mainland mobile number from how people write it (１３９ 0000-0001, +86 139…), or None."""
    digits = "".join(ch for ch in normalize(text) if ch.isdigit())
    for prefix in ("0086", "86"):
        if len(digits) == 11 + len(prefix) and digits.startswith(prefix):
            digits = digits[len(prefix):]
    return digits if len(digits) == 11 and digits.startswith("1") else None


def wording_version(ctx: Any) -> str:
    return ctx.t("family_consent.wording_version")


@dataclass
class WelcomeForm(Form):
    event: str | None = None
    code: str | None = None  # a QR code's scene: an invite code


class FamilyWelcome(Dialog):
    """Someone followed the Official Account (or scanned its code)."""

    name = "family_welcome"
    roles = frozenset({"newcomer", "family"})
    events = ("subscribe", "scan")
    in_menu = False
    states = ["welcome"]
    transitions: list[dict[str, Any]] = []
    form_type = WelcomeForm
    form: WelcomeForm

    async def ask_welcome(self) -> Finish:
        person = self.ctx.person
        if person is None:
            from dialogs.registration import Registration  # it hands back to FamilyConsent

            then: dict[str, Any] = Registration.start_action(family=True)
            if self.form.code:
                then["code"] = str(self.form.code)[:64]
            return Finish((Reply(self.t("newcomer")),), then=then)
        consent = await self.ctx.book.current_consent(person.id)
        preference = await self.ctx.book.preference_of(person.id)
        if confirmed(consent) and (preference is None or preference.stopped_at is None):
            return Finish.with_text(self.t("back", name=person.name))
        return Finish((Reply(self.t("back", name=person.name)),), then=FamilyConsent.start_action())

    async def on_welcome(self, answer: Answer) -> Finish:
        return await self.ask_welcome()


class FamilyConsent(PreferenceSteps, Records):
    name = "family_consent"
    roles = frozenset({"family"})
    global_keywords = ("订阅", "恢复订阅", "subscribe", "resume")
    in_menu = False
    can_discard = False
    states = ["intro", *PREF_STATES, "confirm"]
    transitions = [*chain(states), {"trigger": "edit", "source": "confirm", "dest": "festivals"},
                   {"trigger": "edit", "source": "intro", "dest": "festivals"}]

    def _me(self) -> Person:
        assert self.ctx.person is not None
        return self.ctx.person

    async def _address(self) -> str:
        found = await self.ctx.book.membership(self._me().id)
        return address_of(found[0] if found else None, self._me())

    async def ask_intro(self) -> Reply | Finish:
        me = self._me()
        self._take_facts(await self.ctx.book.member_facts(me.id))
        volunteer = self.form.volunteer or self.ctx.t("family_prefs.your_volunteer")
        consent = await self.ctx.book.current_consent(me.id)
        preference = await self.ctx.book.preference_of(me.id)
        if confirmed(consent):
            await self.load_preferences(me.id)
            if preference is not None and preference.stopped_at is not None:
                self.form.mode = "resume"
                text = "\n".join([self.t("resume_intro"), *self.preference_lines(), self.t("ask_resume")])
                return Reply(text, (Option(self.t("resume_yes"), "yes"), Option(self.t("resume_no"), "no")))
            return Finish.with_text(self.t("already", volunteer=volunteer))
        words = wording(self.ctx, address=await self._address(), volunteer=volunteer)
        if consent is not None:  # recorded in person by a volunteer: the family confirms it now
            self.form.mode = "proxy"
            self.form.consent_id = consent.id
            await self.load_preferences(me.id)
            recorder = await self.ctx.book.person(consent.recorded_by_id)
            day = self.ctx.services.local(consent.given_at)
            text = "\n".join([
                self.t("proxy_intro", recorder=recorder.name if recorder else volunteer,
                       date=f"{day.month}月{day.day}日"),
                words, self.t("proxy_settings"), *self.preference_lines(), self.t("ask_proxy")])
            return Reply(text, (Option(self.t("proxy_yes"), "yes"), Option(self.t("proxy_change"), "change"),
                                Option(self.t("no"), "no")))
        self.form.mode = "new"
        return Reply(words, (Option(self.t("yes"), "yes"), Option(self.t("no"), "no")))

    async def on_intro(self, answer: Answer) -> str | Invalid | Finish:
        mode = self.form.mode
        choice = answer.value if answer.value in {"yes", "no", "change"} else None
        if choice is None:
            if mode == "proxy" and answer.text in {"改", "修改", "我想改一改"}:
                choice = "change"
            else:
                read = read_choice(answer)
                choice = None if read is None else ("yes" if read else "no")
        if choice is None:
            return await self.invalid(answer, self.ctx.t("family_prefs.pick_yes_no"))
        me = self._me()
        now = self.ctx.now()
        volunteer = self.form.volunteer or self.ctx.t("family_prefs.your_volunteer")
        if mode == "resume":
            if choice != "yes":
                return Finish.with_text(self.t("still_stopped"))
            await self.ctx.book.save_preference(me.id, now, stopped_at=None)
            await self.ctx.audit("write", "preference", me.id, self.form.household_id, "resumed")
            return Finish.with_text(self.t("resumed", volunteer=volunteer))
        if choice == "no":
            if mode == "proxy":
                consent = await self.ctx.book.consent(int(self.form.consent_id))
                if consent is not None and consent.withdrawn_at is None:
                    consent.withdrawn_at = now
                    await self.ctx.audit("write", "consent", consent.id, self.form.household_id,
                                         "proxy consent not confirmed")
            return Finish.with_text(self.t("declined", volunteer=volunteer))
        if mode == "proxy" and choice == "yes":
            return await self._save()
        if mode == "new":
            await self.load_preferences(me.id)
        return "next" if mode == "new" else "edit"

    def summary(self) -> str:
        return "\n".join([self.t("summary"), *self.preference_lines()])

    def confirm_choices(self) -> tuple[Option, ...]:
        return (Option(self.t("confirm_yes"), "save"), Option(self.ctx.t("engine.edit"), "edit"))

    async def unclear(self, answer: Answer) -> Invalid:
        return await self.invalid(answer, self.ctx.t("engine.invalid_choice"))

    async def save(self) -> Finish:
        return await self._save()

    async def _save(self) -> Finish:
        me = self._me()
        now = self.ctx.now()
        household_id = self.form.household_id
        consent = None
        if self.form.mode == "proxy":
            consent = await self.ctx.book.consent(int(self.form.consent_id))
            if consent is not None and consent.withdrawn_at is None:
                consent.confirmed_at = consent.confirmed_at or now
        if consent is None or consent.withdrawn_at is not None:
            consent = await self.ctx.book.give_consent(
                person_id=me.id, household_id=household_id, channel=self.ctx.channel,
                wording_version=wording_version(self.ctx))
        preference = await self.ctx.book.preference_of(me.id)
        channel = self.ctx.channel if preference is None or not preference.channel else preference.channel
        await self.ctx.book.save_preference(me.id, now, stopped_at=None, channel=channel, **self.chosen())
        await self.ctx.audit("write", "consent", consent.id, household_id, self.form.mode)
        volunteer = self.form.volunteer or self.ctx.t("family_prefs.your_volunteer")
        return Finish.with_text(self.t("thanks", volunteer=volunteer))


class ProxyConsent(ChoosesHousehold, PreferenceSteps, Records):
    """A volunteer records, face to face, that a family member agreed; they confirm it later."""

    name = "proxy_consent"
    roles = frozenset({"volunteer", "coordinator", "admin"})
    keywords = ("代登记同意", "登记同意", "/proxyconsent")
    proxy = True
    states = ["household", "member", "read", "reach", "phone", *PREF_STATES, "confirm"]
    transitions = [*chain(states), {"trigger": "edit", "source": "confirm", "dest": "festivals"}]

    async def _members(self) -> list[tuple[HouseholdMember, Person]]:
        return await self.ctx.book.family_members(int(self.form.household_id))

    async def ask_member(self) -> Reply | Finish:
        members = await self._members()
        if not members:
            return Finish.with_text(self.t("no_members"))
        return Reply(self.t("which_member"), tuple(
            Option(f"{p.name}（{relation_name(self.ctx, m.relation)}）", str(p.id)) for m, p in members))

    async def on_member(self, answer: Answer) -> str | Invalid | Finish:
        chosen = next(((m, p) for m, p in await self._members() if answer.value == str(p.id)), None)
        if chosen is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        member, person = chosen
        if confirmed(await self.ctx.book.current_consent(person.id)):
            return Finish.with_text(self.t("already", name=person.name))
        self._take_facts(await self.ctx.book.member_facts(person.id))
        self.form.member_person_id, self.form.member_name = person.id, person.name
        self.form.address = address_of(member, person)
        self.form.volunteer = self._person().name
        return "next"

    async def ask_read(self) -> Reply:
        words = wording(self.ctx, address=(self.form.address or ""), volunteer=(self.form.volunteer or ""))
        return Reply("\n".join([self.t("read", name=(self.form.member_name or "")), words]),
                     (Option(self.t("agreed"), "yes"), Option(self.t("not_agreed"), "no")))

    async def on_read(self, answer: Answer) -> str | Invalid | Finish:
        value = read_choice(answer)
        if value is None:
            return Invalid(self.ctx.t("family_prefs.pick_yes_no"))
        if not value:
            return Finish.with_text(self.t("respected", name=(self.form.member_name or "")))
        return "next"

    async def ask_reach(self) -> Reply:
        return Reply(self.t("reach", name=(self.form.member_name or "")),
                     (Option(self.t("reach_chat"), "chat"), Option(self.t("reach_sms"), SMS)))

    async def on_reach(self, answer: Answer) -> str | Invalid:
        value = answer.value or {"短信": SMS, "sms": SMS, "微信": "chat"}.get(answer.text.lower())
        if value not in ("chat", SMS):
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.channel = SMS if value == SMS else None
        return "next"

    async def ask_phone(self) -> Reply | str:
        if self.form.channel != SMS:
            return "next"  # their own chat app: nothing to ask
        known = await self.ctx.book.person(self.form.member_person_id)
        options = (Option(known.phone, known.phone),) if known is not None and known.phone and \
            mobile_number(known.phone) else ()
        return Reply(self.t("phone", name=(self.form.member_name or "")), options)

    async def on_phone(self, answer: Answer) -> str | Invalid:
        number = mobile_number(answer.value or answer.text)
        if number is None:
            return Invalid(self.t("bad_phone"))
        taken = await self.ctx.book.sms_number_owner(number)
        if taken is not None and taken != self.form.member_person_id:
            return Invalid(self.t("phone_taken"))
        self.form.sms_phone = number
        return "next"

    def summary(self) -> str:
        lines = [self.t("summary", name=(self.form.member_name or "")), *self.preference_lines()]
        if self.form.channel == SMS and self.form.sms_phone:
            lines.append(self.t("summary_sms", phone=self.form.sms_phone))
        return "\n".join(lines)

    async def save(self) -> Finish:
        person_id = int(self.form.member_person_id)
        if confirmed(await self.ctx.book.current_consent(person_id)):
            return Finish.with_text(self.t("already", name=(self.form.member_name or "")))
        now = self.ctx.now()
        by_sms = self.form.channel == SMS and bool(self.form.sms_phone)
        if by_sms:
            await self.ctx.book.link_sms_number(person_id, str(self.form.sms_phone))
        consent = await self.ctx.book.give_consent(
            person_id=person_id, household_id=int(self.form.household_id),
            channel=SMS if by_sms else IN_PERSON, wording_version=wording_version(self.ctx),
            recorded_by_id=self._person().id, confirmed=by_sms)
        await self.ctx.book.save_preference(person_id, now, stopped_at=None, **self.chosen(),
                                            **({"channel": SMS} if by_sms else {}))
        await self.ctx.audit("write", "consent", consent.id, int(self.form.household_id),
                             "in person, sms" if by_sms else "in person")
        name = self.form.member_name or ""
        if not by_sms:
            return Finish.with_text(self.t("saved", name=name))
        await self.ctx.book.notify_family(
            person_id, self.t("notice", address=(self.form.address or name), volunteer=(self.form.volunteer or "")),
            kind="consent_notice", key=f"consent_notice:{consent.id}",
            extra={"address": self.form.address or name, "volunteer": self.form.volunteer or ""})
        return Finish.with_text(self.t("saved_sms", name=name, phone=str(self.form.sms_phone)))
