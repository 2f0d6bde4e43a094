"""The casebook's footing: one step's session, services and sender; households in scope;
messages and the audit log."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import invitations
from domain.family_card import CardFacts, card_facts
from domain.messages import Reply, queue_message
from domain.services import Services, TaskView
from storage.audit import record_audit
from storage.models import Household, OutboxMessage, Person
from storage.queries import (
    HouseholdChoice,
    MemberName,
    household_choice,
    household_choices,
    household_count,
    household_for,
    household_labels,
    households_for,
    last_contact,
    member_names,
)
from storage.scope import visible_households


class BookBase:
    """What every part of the casebook stands on: the step's session, services and sender."""

    def __init__(self, session: AsyncSession, services: Services, actor: Person | None) -> None:
        self._session = session
        self.services = services
        self.actor = actor

    def _me(self) -> Person:
        if self.actor is None:
            raise PermissionError("a step without a known sender cannot read case records")
        return self.actor

    def now(self) -> datetime:
        return self.services.now()

    # ------------------------------------------------------------------ households

    async def households(self) -> list[Household]:
        """The households the sender may see, by code."""
        return await households_for(self._session, self._me())

    async def household(self, household_id: int) -> Household | None:
        """One household if the sender may see it, else None (a forwarded or forged button)."""
        return await household_for(self._session, self._me(), household_id)

    async def household_choices(self, limit: int) -> list[HouseholdChoice]:
        """The first `limit` households the sender may see, by code, with their labels."""
        return await household_choices(self._session, self._me(), limit)

    async def household_count(self) -> int:
        """How many households the sender may see."""
        return await household_count(self._session, self._me())

    async def household_choice(self, household_id: int) -> HouseholdChoice | None:
        """One household's label if the sender may see it, else None (a forwarded or forged
        button); what a question answered by a household needs, without loading it."""
        return await household_choice(self._session, self._me(), household_id)

    async def labels(self, households: list[Household]) -> dict[int, str]:
        return await household_labels(self._session, households)

    async def label(self, household: Household) -> str:
        return (await household_labels(self._session, [household]))[household.id]

    async def member_names(self, household_id: int) -> list[MemberName]:
        """The living members of a household by name and relation (for "which of them?")."""
        return await member_names(self._session, household_id)

    async def last_contact(self, household_ids: list[int]) -> dict[int, date]:
        return await last_contact(self._session, household_ids)

    async def card(self, household: Household) -> CardFacts:
        """What the household's card shows (the caller got `household` through the scope rule
        and audits the opening: chat and the web console each say where it was opened)."""
        return await card_facts(self._session, household)

    async def due_tasks(self, household_id: int) -> list[TaskView]:
        return await self.services.tasks.for_household(self._session, household_id, self.now())

    def send_window(self) -> invitations.SendWindow:
        """When a family may be messaged (quiet hours, hard days): the pacing rule."""
        return invitations.SendWindow.of(self.services)

    def _visible_ids(self) -> Select[int]:
        return visible_households(self._me()).with_only_columns(Household.id)

    # ------------------------------------------------------------------ messages and audit

    async def notify(self, person_id: int, reply: Reply, *, kind: str, key: str,
                     expires_at: datetime | None = None) -> OutboxMessage | None:
        """Queue a message to a person through the outbox, once per key."""
        return await queue_message(self._session, person_id=person_id, reply=reply, kind=kind,
                                   key=key, now=self.now(), expires_at=expires_at)

    async def audit(self, action: str, entity: str, entity_id: int | None,
                    household_id: int | None, detail: str | None = None) -> None:
        await record_audit(self._session, actor_id=self.actor.id if self.actor else None,
                           action=action, entity=entity, entity_id=entity_id,
                           household_id=household_id, detail=detail, at=self.now())
