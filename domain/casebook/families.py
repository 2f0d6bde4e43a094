"""Family outreach as a step sees it: consent, preferences, stop, the line back and the reply."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from domain import family_line, outreach
from domain.casebook.base import BookBase
from storage.models import (
    ChannelAddress,
    Consent,
    FamilyMessage,
    Household,
    HouseholdMember,
    Person,
    Preference,
    Role,
)


class FamilyDesk(BookBase):
    """Consent, preferences, stop, and the family's line back."""

    # ------------------------------------------------------------------ family outreach

    async def membership(self, person_id: int) -> tuple[HouseholdMember, Household] | None:
        return await outreach.membership(self._session, person_id)

    async def member_facts(self, person_id: int) -> dict[str, object]:
        return await outreach.member_facts(self._session, person_id)

    async def volunteer_of(self, household_id: int | None) -> Person | None:
        return await outreach.volunteer_of(self._session, household_id)

    async def current_consent(self, person_id: int) -> Consent | None:
        return await outreach.current_consent(self._session, person_id)

    async def consent(self, consent_id: int) -> Consent | None:
        return await self._session.get(Consent, consent_id)

    async def give_consent(self, *, person_id: int, household_id: int | None, channel: str,
                           wording_version: str, recorded_by_id: int | None = None,
                           confirmed: bool = False) -> Consent:
        """A new consent: the member's own, or one a volunteer recorded face to face
        (`recorded_by_id`), which counts only once the member confirms it — or at once
        (`confirmed`) for a member with only a basic phone, who has no chat to confirm in."""
        consent = Consent(person_id=person_id, household_id=household_id, channel=channel,
                          wording_version=wording_version, given_at=self.now(),
                          recorded_by_id=recorded_by_id, confirmed_at=self.now() if confirmed else None)
        self._session.add(consent)
        await self._session.flush()
        return consent

    async def sms_number_owner(self, number: str) -> int | None:
        """Whose SMS address this mobile number is, if anyone's."""
        return await self._session.scalar(select(ChannelAddress.person_id).where(
            ChannelAddress.channel == outreach.SMS, ChannelAddress.address == number))

    async def link_sms_number(self, person_id: int, number: str) -> None:
        """The member's basic phone as their SMS address (one number, one member)."""
        existing = await self._session.scalar(select(ChannelAddress).where(
            ChannelAddress.person_id == person_id, ChannelAddress.channel == outreach.SMS))
        if existing is None:
            self._session.add(ChannelAddress(person_id=person_id, channel=outreach.SMS, address=number,
                                             created_at=self.now()))
        else:
            existing.address, existing.blocked_at = number, None
        await self._session.flush()

    async def notify_family(self, person_id: int, text: str, *, kind: str, key: str,
                            extra: dict[str, object] | None = None) -> None:
        """A message to a family member on their own channel (see outreach.queue_to_family)."""
        await outreach.queue_to_family(self._session, person_id=person_id, text=text, kind=kind, key=key,
                                       now=self.now(), extra=extra)

    async def preference_of(self, person_id: int) -> Preference | None:
        return await outreach.preference_of(self._session, person_id)

    async def save_preference(self, person_id: int, now: datetime, **values: object) -> Preference:
        return await outreach.save_preference(self._session, person_id, now, **values)

    async def stop_all(self, person_id: int, now: datetime) -> bool:
        return await outreach.stop_all(self._session, person_id, now)

    async def may_answer(self, person_id: int) -> bool:
        return await outreach.may_answer(self._session, person_id)

    async def person(self, person_id: int | None) -> Person | None:
        return await self._session.get(Person, person_id) if person_id else None

    async def family_members(self, household_id: int) -> list[tuple[HouseholdMember, Person]]:
        """The living family members of a household who are registered and active."""
        rows = await self._session.execute(
            select(HouseholdMember, Person).join(Person, Person.id == HouseholdMember.person_id)
            .where(HouseholdMember.household_id == household_id, HouseholdMember.alive.is_(True),
                   Person.role == Role.FAMILY, Person.active.is_(True))
            .order_by(HouseholdMember.id))
        return [(m, p) for m, p in rows.all()]

    async def channels_of(self, person_id: int) -> list[str]:
        """The channels a person can be reached on (not blocked), sorted."""
        rows = await self._session.scalars(select(ChannelAddress.channel).where(
            ChannelAddress.person_id == person_id, ChannelAddress.blocked_at.is_(None)))
        return sorted(set(rows))

    # ------------------------------------------------------------------ the family's line back

    async def receive_family_words(self, *, text: str, wants_call: bool, call_reason: str,
                                   channel: str) -> family_line.Received:
        """Keep what the sender (a family member) wrote; the caller forwards it."""
        me = self._me()
        found = await outreach.membership(self._session, me.id)
        member, household = found if found else (None, None)
        return await family_line.receive(self._session, person=me, member=member,
                                         household=household, channel=channel, text=text,
                                         wants_call=wants_call, call_reason=call_reason,
                                         now=self.now())

    async def family_message(self, message_id: int) -> FamilyMessage | None:
        """A family's message to a household the sender may see, else None."""
        return await self._session.scalar(select(FamilyMessage).where(
            FamilyMessage.id == message_id, FamilyMessage.household_id.in_(self._visible_ids())))

    async def waiting_family_messages(self, limit: int) -> list[tuple[FamilyMessage, str]]:
        """Unanswered messages of the sender's households (escalated first), with the writer's name."""
        rows = await self._session.execute(
            select(FamilyMessage, Person.name).join(Person, Person.id == FamilyMessage.person_id)
            .where(FamilyMessage.answered_at.is_(None), FamilyMessage.household_id.in_(self._visible_ids()))
            .order_by(FamilyMessage.escalated_at.is_(None), FamilyMessage.received_at).limit(limit))
        return [(m, name) for m, name in rows.all()]

    async def writer_of(self, message: FamilyMessage) -> tuple[Person, HouseholdMember | None]:
        person = await self._session.get(Person, message.person_id)
        assert person is not None
        member = await self._session.scalar(select(HouseholdMember).where(
            HouseholdMember.person_id == person.id, HouseholdMember.household_id == message.household_id))
        return person, member

    async def family_thread(self, message: FamilyMessage) -> list[FamilyMessage]:
        """The message and the writer's other unanswered ones, newest first."""
        return list(await self._session.scalars(
            select(FamilyMessage).where(FamilyMessage.person_id == message.person_id,
                                        FamilyMessage.household_id == message.household_id,
                                        (FamilyMessage.answered_at.is_(None)) | (FamilyMessage.id == message.id))
            .order_by(FamilyMessage.received_at.desc()).limit(family_line.THREAD)))

    async def reply_to_family(self, message: FamilyMessage, person_id: int, text: str) -> bool:
        """Queue a written reply to the family (never in quiet hours); False if it cannot go."""
        now = self.now()
        if not await outreach.may_answer(self._session, person_id):
            return False
        row = await outreach.queue_to_family(
            self._session, person_id=person_id, kind="family_reply", text=text,
            key=f"family_reply:{message.id}:{now.timestamp():.6f}", now=now,
            not_before=self.send_window().family_time(now))
        return row is not None

    async def record_family_answer(self, message: FamilyMessage, mode: str) -> None:
        person, member = await self.writer_of(message)
        await family_line.record_answer(self._session, message=message, person=person,
                                        member=member, by=self._me(), mode=mode,
                                        today=self.services.today(), now=self.now())

