"""Joining Warmline, the web console's sign-in link, and the chat report."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from domain import enrolment
from domain.casebook.base import BookBase
from domain.messages import Attachment
from storage.console_auth import issue_link
from storage.models import Household, HouseholdMember, InviteCode, Person, Role


class JoiningDesk(BookBase):
    """Joining with an invite code or a known phone; the web console's link; the chat report."""

    # ------------------------------------------------------------------ joining

    async def check_invite(self, *, channel: str, address: str, text: str,
                           looks_like_code: bool) -> enrolment.CodeCheck:
        """Check a typed invite code (a wrong one is counted against the address)."""
        return await enrolment.check_code(
            self._session, channel=channel, address=address, text=text, now=self.now(),
            window=self.services.invite_failure_window,
            max_failures=self.services.invite_max_failures,
            max_failures_global=self.services.invite_max_failures_global, looks_like_code=looks_like_code)

    async def invite(self, invite_id: int) -> InviteCode | None:
        return await self._session.get(InviteCode, invite_id)

    async def staff_by_phone(self, digits: str) -> Person | None:
        """An active volunteer, coordinator or admin with this phone number."""
        person = await self._session.scalar(select(Person).where(Person.phone == digits,
                                                                 Person.active.is_(True)))
        return None if person is None or person.role == Role.FAMILY else person

    async def registered_family(self, household_id: int) -> list[tuple[HouseholdMember, Person]]:
        return await enrolment.registered_family(self._session, household_id)

    async def new_person(self, *, name: str, role: str, township_id: int | None,
                         household_id: int | None = None, relation: str | None = None) -> Person | None:
        """Someone new; with `household_id`, a new member of that (not erased) household."""
        if household_id is not None:
            household = await self._session.get(Household, household_id)
            if household is None or household.erased_at is not None:
                return None
            township_id = household.township_id
        person = Person(name=name, role=role, township_id=township_id, created_at=self.now())
        self._session.add(person)
        await self._session.flush()
        if household_id is not None:
            self._session.add(HouseholdMember(household_id=household_id, person_id=person.id,
                                              relation=relation or "other"))
        return person

    async def join(self, person: Person, channel: str, address: str,
                   invite: InviteCode | None = None) -> None:
        """Bind the address to `person` (and use up the invite); the step now acts as them."""
        now = self.now()
        await enrolment.link_address(self._session, person, channel, address, self.services)
        if invite is not None:
            invite.used_at = now
            invite.used_by_id = person.id
        self.actor = person

    # ------------------------------------------------------------------ the web console

    async def console_link(self, ttl: timedelta) -> tuple[str, str] | None:
        """A single-use sign-in link token and code for the sender, or None if they may not."""
        return await issue_link(self._session, self._me(), self.now(), ttl)

    # ------------------------------------------------------------------ reports

    async def chat_report(self, period: str | None) -> tuple[str, Attachment | None]:
        """The sender's scope summed up for chat (text and a chart); raises ValueError for a
        period the reports cannot read. The reports service is wired in by `bot/`."""
        reports = self.services.reports
        assert reports is not None
        return await reports.for_person(self._session, self._me(), self.now(), period=period)

