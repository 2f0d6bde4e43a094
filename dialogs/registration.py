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

from sqlalchemy import select

from dialogs.engine.context import route_waiting
from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.types import Option, Reply
from dialogs.parsing import normalize
from storage.invites import guessing_locked, hash_code, looks_like_code, normalize_code
from storage.models import (
    ChannelAddress,
    Household,
    HouseholdMember,
    InviteCode,
    InviteFailure,
    Person,
    Township,
)
from storage.queries import members_of

ROLE_KEYS = {"volunteer", "coordinator", "admin", "family"}
RELATIONS = ("father", "mother", "grandchild", "other")


class Registration(Dialog):
    name = "register"
    roles = frozenset({"newcomer"})
    in_menu = False
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

    async def begin(self, args: dict) -> None:
        if args.get("family"):
            self.data["family_hint"] = True  # came from the Official Account: a family's words
        if args.get("phone"):
            self.data["phone"] = args["phone"]
        if args.get("code") and looks_like_code(str(args["code"])):
            self.data["pending_code"] = str(args["code"])[:64]

    async def ask_code(self) -> Reply | str | Finish:
        if self.data.get("phone"):
            linked = await self._link_by_phone(self.data.pop("phone"))
            if linked is not None:
                return linked
        pending = self.data.pop("pending_code", None)
        if pending:
            result = await self._try_code(pending)
            if result is None:
                return self._after_code()
            return Reply(result + "\n" + self._ask_code_text())
        if self.data.get("family_hint"):
            return Reply(self._ask_code_text())
        return Reply(self.t("welcome") + "\n" + self.t("ask_code"))

    def _ask_code_text(self) -> str:
        return self.t("ask_code_family" if self.data.get("family_hint") else "ask_code")

    def _after_code(self) -> str:
        """A family invite not bound to one person asks who they are; anything else, the name."""
        return "family" if self.data.get("household_id") and not self.data.get("name") else "next"

    async def on_code(self, answer: Answer) -> str | Invalid:
        problem = await self._try_code(answer.text)
        return Invalid(problem) if problem else self._after_code()

    async def _try_code(self, text: str) -> str | None:
        """None when the code is good (and remembered), else the reason to show."""
        now = self.ctx.now()
        services = self.ctx.services
        if await guessing_locked(self.ctx.session, channel=self.ctx.channel, address=self.ctx.address, now=now,
                                 window=services.invite_failure_window, per_address=services.invite_max_failures,
                                 county_wide=services.invite_max_failures_global):
            return self.t("locked")
        if not looks_like_code(text):
            return self.t("bad_code")  # not a guess: words, a greeting, a typo in length
        invite = await self.ctx.session.scalar(
            select(InviteCode).where(InviteCode.code_hash == hash_code(normalize_code(text))))
        if invite is None or invite.used_at is not None or invite.expires_at <= now:
            self.ctx.session.add(InviteFailure(channel=self.ctx.channel, address=self.ctx.address, at=now))
            if invite is not None and invite.used_at is not None:
                return self.t("used")
            if invite is not None:
                return self.t("expired")
            return self.t("bad_code")
        self.data["invite_id"] = invite.id
        self.data["role"] = invite.role
        if invite.household_id:
            self.data["household_id"] = invite.household_id
        if invite.person_id:
            person = await self.ctx.session.get(Person, invite.person_id)
            if person is not None:
                self.data["name"] = person.name
        if invite.township_id:
            township = await self.ctx.session.get(Township, invite.township_id)
            self.data["township"] = township.name if township else ""
        return None

    async def _link_by_phone(self, phone: str) -> Finish | None:
        digits = "".join(ch for ch in normalize(phone) if ch.isdigit())
        if len(digits) > 11 and digits.startswith("86"):
            digits = digits[2:]
        person = await self.ctx.session.scalar(select(Person).where(Person.phone == digits,
                                                                    Person.active.is_(True)))
        if person is None or person.role == "family":
            return None
        self.ctx.session.add(ChannelAddress(person_id=person.id, channel=self.ctx.channel,
                                            address=self.ctx.address, created_at=self.ctx.now(),
                                            last_inbound_at=self.ctx.now()))
        await route_waiting(self.ctx.session, person.id, self.ctx.channel, self.ctx.address, self.ctx.services)
        self.ctx.person = person
        await self.ctx.audit("write", "registration", person.id, None, "phone")
        return Finish.with_text(self.t("welcome_back", name=person.name))

    async def ask_name(self) -> Reply | str:
        if self.data.get("name"):
            return "next"
        return Reply(self.t("ask_name"))

    async def on_name(self, answer: Answer) -> str | Invalid:
        name = answer.clean
        if not 1 <= len(name) <= 30 or any(ch.isdigit() for ch in name):
            return Invalid(self.t("bad_name"))
        self.data["name"] = name
        return "relation" if self.data.get("household_id") else "next"

    # a family invite: which member of the household is this?
    async def _family_members(self) -> list[tuple[HouseholdMember, Person]]:
        household = await self.ctx.session.get(Household, int(self.data["household_id"]))
        if household is None or household.erased_at is not None:
            return []
        return [(m, p) for m, p in await members_of(self.ctx.session, household.id)
                if p.role == "family" and p.active]

    async def ask_member(self) -> Reply | str:
        members = await self._family_members()
        if not members:
            return "new"
        options = [Option(f"{p.name}（{self.t('relation_' + m.relation) if m.relation in RELATIONS else self.t('relation_other')}）",
                          str(p.id)) for m, p in members]
        return Reply(self.t("ask_member"), (*options, Option(self.t("member_new"), "new")))

    async def on_member(self, answer: Answer) -> str | Invalid:
        if answer.value == "new":
            self.data.pop("member_person_id", None)
            return "new"
        chosen = next((p for _m, p in await self._family_members() if answer.value == str(p.id)), None)
        if chosen is None:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["member_person_id"] = chosen.id
        self.data["name"] = chosen.name
        return "next"

    async def ask_relation(self) -> Reply:
        return Reply(self.t("ask_relation"), tuple(Option(self.t(f"relation_{r}"), r) for r in RELATIONS))

    async def on_relation(self, answer: Answer) -> str | Invalid:
        if answer.value not in RELATIONS:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        self.data["relation"] = answer.value
        return "next"

    async def ask_confirm(self) -> Reply:
        if self.data.get("household_id"):
            return Reply(self.t("confirm_family", name=self.data.get("name", "")),
                         (Option(self.t("yes_register"), "save"), Option(self.t("not_me"), "edit")))
        role = self.t(f"role_{self.data.get('role', 'volunteer')}")
        text = self.t("confirm", name=self.data.get("name", ""), role=role,
                      township=self.data.get("township") or self.t("county"))
        return Reply(text, (Option(self.t("yes_register"), "save"), Option(self.t("change_name"), "edit")))

    async def on_confirm(self, answer: Answer) -> str | Invalid | Finish:
        if answer.value == "edit" or answer.text in {"修改", "改名"}:
            self.data.pop("name", None)
            if self.data.get("household_id") and not await self._bound_person():
                self.data.pop("member_person_id", None)
                return "rechoose"
            return "edit"
        if answer.value != "save" and answer.text not in {"确认", "是", "好", "yes"}:
            return Invalid(self.ctx.t("engine.invalid_choice"))
        return await self._save()

    async def _save(self) -> Finish:
        now = self.ctx.now()
        invite = await self.ctx.session.get(InviteCode, int(self.data["invite_id"]))
        if invite is None or invite.used_at is not None or invite.expires_at <= now:
            return Finish.with_text(self.t("used"))
        person = await self.ctx.session.get(Person, invite.person_id) if invite.person_id else None
        if person is None and invite.household_id is not None:
            person = await self._family_person(invite)
            if person is None:
                return Finish.with_text(self.t("member_gone"))
        if person is None:
            person = Person(name=self.data["name"], role=invite.role, township_id=invite.township_id,
                            created_at=now)
            self.ctx.session.add(person)
            await self.ctx.session.flush()
        self.ctx.session.add(ChannelAddress(person_id=person.id, channel=self.ctx.channel,
                                            address=self.ctx.address, created_at=now,
                                            last_inbound_at=now))
        await route_waiting(self.ctx.session, person.id, self.ctx.channel, self.ctx.address, self.ctx.services)
        invite.used_at = now
        invite.used_by_id = person.id
        self.ctx.person = person
        await self.ctx.audit("write", "registration", person.id, invite.household_id, invite.role)
        if invite.household_id is not None and person.role == "family":
            return Finish((Reply(self.t("done_family", name=person.name)),), then={"start": "family_consent"})
        return Finish.with_text(self.t("done", name=person.name))

    async def _bound_person(self) -> bool:
        invite = await self.ctx.session.get(InviteCode, int(self.data["invite_id"]))
        return invite is not None and invite.person_id is not None

    async def _family_person(self, invite: InviteCode) -> Person | None:
        """The household member the newcomer said they are, or a new member of that household."""
        now = self.ctx.now()
        if self.data.get("member_person_id"):
            wanted = int(self.data["member_person_id"])
            return next((p for _m, p in await self._family_members() if p.id == wanted), None)
        household = await self.ctx.session.get(Household, invite.household_id)
        if household is None or household.erased_at is not None:
            return None
        person = Person(name=self.data["name"], role="family", township_id=household.township_id,
                        created_at=now)
        self.ctx.session.add(person)
        await self.ctx.session.flush()
        self.ctx.session.add(HouseholdMember(household_id=household.id, person_id=person.id,
                                             relation=self.data.get("relation") or "other"))
        return person
