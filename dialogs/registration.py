"""注册 — a newcomer joins with an invite code (typed, or from a deep link) or a shared contact.

    code → name → confirm
    code --family--> member → confirm          (a family invite: "您是哪一位？")
             member --new--> name → relation → confirm
A code bound to an imported person skips the name; repeated wrong codes from one address are
refused for a while, so codes cannot be guessed. A family invite (made for one household) links
the newcomer to the household member they say they are, or adds them as a new member, and then
hands over to the consent dialog: nothing is sent to a family before they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialogs.engine.dialog import Answer, Finish, Invalid
from dialogs.engine.recording import RecordForm, Records
from dialogs.engine.types import Option, Reply
from dialogs.family_consent import FamilyConsent
from dialogs.parsing import normalize
from storage.invites import looks_like_code
from storage.models import (
    HouseholdMember,
    Person,
)

ROLE_KEYS = {"volunteer", "coordinator", "admin", "family"}
RELATIONS = ("father", "mother", "grandchild", "other")


@dataclass
class RegistrationForm(RecordForm):
    family_hint: bool = False  # came from the Official Account: a family's words
    phone: str | None = None  # a shared contact, to link at once
    pending_code: str | None = None  # a code that came with the start (a QR scan, a deep link)
    invite_id: int | None = None
    role: str | None = None
    household_id: int | None = None
    name: str | None = None
    township: str | None = None
    member_person_id: int | None = None
    relation: str | None = None


class Registration(Records):
    name = "register"
    roles = frozenset({"newcomer"})
    in_menu = False
    can_discard = False
    for_newcomers = True
    contact_states = ("code",)
    states = ["code", "name", "confirm", "member", "relation"]
    transitions = [
        {"trigger": "next", "source": "code", "dest": "name"},
        {"trigger": "next", "source": "name", "dest": "confirm"},
        {"trigger": "edit", "source": "confirm", "dest": "name"},
        {"trigger": "family", "source": "code", "dest": "member"},
        {"trigger": "next", "source": "member", "dest": "confirm"},
        {"trigger": "new", "source": "member", "dest": "name"},
        {"trigger": "relation", "source": "name", "dest": "relation"},
        {"trigger": "next", "source": "relation", "dest": "confirm"},
        {"trigger": "rechoose", "source": "confirm", "dest": "member"},
    ]
    form_type = RegistrationForm
    form: RegistrationForm

    async def begin(self, args: dict) -> None:
        if args.get("family"):
            self.form.family_hint = True  # came from the Official Account: a family's words
        if args.get("phone"):
            self.form.phone = args["phone"]
        if args.get("code") and looks_like_code(str(args["code"])):
            self.form.pending_code = str(args["code"])[:64]

    async def ask_code(self) -> Reply | str | Finish:
        if self.form.phone:
            phone, self.form.phone = self.form.phone, None
            linked = await self._link_by_phone(phone)
            if linked is not None:
                return linked
        pending, self.form.pending_code = self.form.pending_code, None
        if pending:
            result = await self._try_code(pending)
            if result is None:
                return self._after_code()
            return Reply(result + "\n" + self._ask_code_text())
        if self.form.family_hint:
            return Reply(self._ask_code_text())
        return Reply(self.t("welcome") + "\n" + self.t("ask_code"))

    def _ask_code_text(self) -> str:
        return self.t("ask_code_family" if self.form.family_hint else "ask_code")

    def _after_code(self) -> str:
        """A family invite not bound to one person asks who they are; anything else, the name."""
        return "family" if self.form.household_id and not self.form.name else "next"

    async def on_code(self, answer: Answer) -> str | Invalid:
        problem = await self._try_code(answer.text)
        return Invalid(problem) if problem else self._after_code()

    async def _try_code(self, text: str) -> str | None:
        """None when the code is good (and remembered), else the reason to show."""
        check = await self.ctx.book.check_invite(channel=self.ctx.channel, address=self.ctx.address,
                                                 text=text, looks_like_code=looks_like_code(text))
        if check.problem is not None or check.invite is None:
            return self.t(check.problem or "bad_code")
        invite = check.invite
        self.form.invite_id = invite.id
        self.form.role = invite.role
        if invite.household_id:
            self.form.household_id = invite.household_id
        if check.person_name is not None:
            self.form.name = check.person_name
        if check.township_name is not None:
            self.form.township = check.township_name
        return None

    async def _link_by_phone(self, phone: str) -> Finish | None:
        digits = "".join(ch for ch in normalize(phone) if ch.isdigit())
        if len(digits) > 11 and digits.startswith("86"):
            digits = digits[2:]
        person = await self.ctx.book.staff_by_phone(digits)
        if person is None:
            return None
        await self.ctx.book.join(person, self.ctx.channel, self.ctx.address)
        self.ctx.person = person
        await self.ctx.audit("write", "registration", person.id, None, "phone")
        return Finish.with_text(self.t("welcome_back", name=person.name))

    async def ask_name(self) -> Reply | str:
        if self.form.name:
            return "next"
        return Reply(self.t("ask_name"))

    async def on_name(self, answer: Answer) -> str | Invalid:
        name = answer.clean
        if not 1 <= len(name) <= 30 or any(ch.isdigit() for ch in name):
            return Invalid(self.t("bad_name"))
        self.form.name = name
        return "relation" if self.form.household_id else "next"

    # a family invite: which member of the household is this?
    async def _family_members(self) -> list[tuple[HouseholdMember, Person]]:
        return await self.ctx.book.registered_family(int(self.form.household_id))

    async def ask_member(self) -> Reply | str:
        members = await self._family_members()
        if not members:
            return "new"
        options = [Option(f"{p.name}（{self.t('relation_' + m.relation) if m.relation in RELATIONS else self.t('relation_other')}）",
                          str(p.id)) for m, p in members]
        return Reply(self.t("ask_member"), (*options, Option(self.t("member_new"), "new")))

    async def on_member(self, answer: Answer) -> str | Invalid:
        if answer.value == "new":
            self.form.member_person_id = None
            return "new"
        chosen = next((p for _m, p in await self._family_members() if answer.value == str(p.id)), None)
        if chosen is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.member_person_id = chosen.id
        self.form.name = chosen.name
        return "next"

    async def ask_relation(self) -> Reply:
        return Reply(self.t("ask_relation"), tuple(Option(self.t(f"relation_{r}"), r) for r in RELATIONS))

    async def on_relation(self, answer: Answer) -> str | Invalid:
        if answer.value not in RELATIONS:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.form.relation = answer.value
        return "next"

    async def confirm_text(self) -> str:
        if self.form.household_id:
            return self.t("confirm_family", name=(self.form.name or ""))
        role = self.t(f"role_{self.form.role or 'volunteer'}")
        return self.t("confirm", name=(self.form.name or ""), role=role,
                      township=self.form.township or self.t("county"))

    def confirm_choices(self) -> tuple[Option, ...]:
        change = "not_me" if self.form.household_id else "change_name"
        return (Option(self.t("yes_register"), "save"), Option(self.t(change), "edit"))

    async def change(self) -> str:
        self.form.name = None
        if self.form.household_id and not await self._bound_person():
            self.form.member_person_id = None
            return "rechoose"
        return "edit"

    async def save(self) -> Finish:
        return await self._save()

    async def _save(self) -> Finish:
        now = self.ctx.now()
        book = self.ctx.book
        invite = await book.invite(int(self.form.invite_id))
        if invite is None or invite.used_at is not None or invite.expires_at <= now:
            return Finish.with_text(self.t("used"))
        person = await book.person(invite.person_id)
        if person is None and invite.household_id is not None:
            person = await self._family_person(invite.household_id)
            if person is None:
                return Finish.with_text(self.t("member_gone"))
        if person is None:
            person = await book.new_person(name=self.form.name, role=invite.role,
                                           township_id=invite.township_id)
            assert person is not None
        await book.join(person, self.ctx.channel, self.ctx.address, invite)
        self.ctx.person = person
        await self.ctx.audit("write", "registration", person.id, invite.household_id, invite.role)
        if invite.household_id is not None and person.role == "family":
            return Finish((Reply(self.t("done_family", name=person.name)),), then=FamilyConsent.start_action())
        return Finish.with_text(self.t("done", name=person.name))

    async def _bound_person(self) -> bool:
        invite = await self.ctx.book.invite(int(self.form.invite_id))
        return invite is not None and invite.person_id is not None

    async def _family_person(self, household_id: int) -> Person | None:
        """The household member the newcomer said they are, or a new member of that household."""
        if self.form.member_person_id:
            wanted = int(self.form.member_person_id)
            return next((p for _m, p in await self._family_members() if p.id == wanted), None)
        return await self.ctx.book.new_person(name=self.form.name, role="family", township_id=None,
                                              household_id=household_id,
                                              relation=self.form.relation or "other")
