"""注册 — a newcomer joins with an invite code (typed, or from a deep link) or a shared contact.

    code → name → confirm
A code bound to an imported person skips the name; repeated wrong codes from one address are
refused for a while, so codes cannot be guessed.
"""

from __future__ import annotations

from sqlalchemy import func, select

from dialogs.engine.context import route_waiting
from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid
from dialogs.engine.types import Option, Reply
from dialogs.parsing import normalize
from storage.invites import hash_code, looks_like_code, normalize_code
from storage.models import ChannelAddress, InviteCode, InviteFailure, Person, Township

ROLE_KEYS = {"volunteer", "coordinator", "admin", "family"}


class Registration(Dialog):
    name = "register"
    roles = frozenset({"newcomer"})
    in_menu = False
    states = ["code", "name", "confirm"]
    transitions = [
        {"trigger": "next", "source": "code", "dest": "name"},
        {"trigger": "next", "source": "name", "dest": "confirm"},
        {"trigger": "edit", "source": "confirm", "dest": "name"},
    ]

    async def begin(self, args: dict) -> None:
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
                return "next"
            return Reply(result + "\n" + self.t("ask_code"))
        return Reply(self.t("welcome") + "\n" + self.t("ask_code"))

    async def on_code(self, answer: Answer) -> str | Invalid:
        problem = await self._try_code(answer.text)
        return Invalid(problem) if problem else "next"

    async def _try_code(self, text: str) -> str | None:
        """None when the code is good (and remembered), else the reason to show."""
        now = self.ctx.now()
        services = self.ctx.services
        failures = await self.ctx.session.scalar(
            select(func.count()).select_from(InviteFailure).where(
                InviteFailure.channel == self.ctx.channel, InviteFailure.address == self.ctx.address,
                InviteFailure.at > now - services.invite_failure_window))
        if (failures or 0) >= services.invite_max_failures:
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
                                            address=self.ctx.address, created_at=self.ctx.now()))
        await route_waiting(self.ctx.session, person.id, self.ctx.channel, self.ctx.address)
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
        return "next"

    async def ask_confirm(self) -> Reply:
        role = self.t(f"role_{self.data.get('role', 'volunteer')}")
        text = self.t("confirm", name=self.data.get("name", ""), role=role,
                      township=self.data.get("township") or self.t("county"))
        return Reply(text, (Option(self.t("yes_register"), "save"), Option(self.t("change_name"), "edit")))

    async def on_confirm(self, answer: Answer) -> str | Invalid | Finish:
        if answer.value == "edit" or answer.text in {"修改", "改名"}:
            self.data.pop("name", None)
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
        if person is None:
            person = Person(name=self.data["name"], role=invite.role, township_id=invite.township_id,
                            created_at=now)
            self.ctx.session.add(person)
            await self.ctx.session.flush()
        self.ctx.session.add(ChannelAddress(person_id=person.id, channel=self.ctx.channel,
                                            address=self.ctx.address, created_at=now,
                                            last_inbound_at=now))
        await route_waiting(self.ctx.session, person.id, self.ctx.channel, self.ctx.address)
        invite.used_at = now
        invite.used_by_id = person.id
        self.ctx.person = person
        await self.ctx.audit("write", "registration", person.id, invite.household_id, invite.role)
        return Finish.with_text(self.t("done", name=person.name))
