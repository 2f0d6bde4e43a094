"""Family outreach rules shared by the family dialogs and the scheduler's jobs: one place each.

- May Warmline write to this family member? Only with a consent that is not withdrawn (a consent
  a volunteer recorded on the family's behalf only once the family confirmed it themselves), and
  not after they said 退订 (Preference.stopped_at). Answers to a family's own words need no
  consent — they asked — but a stop stops those too.
- Where to: the channel the member chose, else the address they used last; never a blocked one.
  A family message is never parked for an address that may come days later.
- 退订 stops everything at once: messages already queued for the member are withdrawn.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.messages import Reply, payload_of
from storage.models import (
    ChannelAddress,
    Consent,
    Household,
    HouseholdMember,
    OutboxMessage,
    OutboxStatus,
    Person,
    Preference,
)
from storage.queries import contact_volunteer

STOPPED_NOTE = "stopped by the family"
IN_PERSON = "in_person"  # the channel of a consent a volunteer recorded face to face
SMS = "sms"  # text messages to a basic phone: templates only, for families with no chat app
RELATIONS = ("father", "mother", "grandchild", "other")


async def membership(session: AsyncSession, person_id: int) -> tuple[HouseholdMember, Household] | None:
    """The member's place in a (not erased) household; the first one if, rarely, several."""
    row = (await session.execute(
        select(HouseholdMember, Household).join(Household, Household.id == HouseholdMember.household_id)
        .where(HouseholdMember.person_id == person_id, Household.erased_at.is_(None))
        .order_by(HouseholdMember.id).limit(1))).first()
    return (row[0], row[1]) if row else None


async def volunteer_of(session: AsyncSession, household_id: int | None) -> Person | None:
    """The household's contact volunteer, if there is one who is still active."""
    if household_id is None:
        return None
    volunteer = await contact_volunteer(session, household_id)
    return volunteer if volunteer is not None and volunteer.active else None


async def current_consent(session: AsyncSession, person_id: int) -> Consent | None:
    """The member's consent that is not withdrawn (the newest, if several)."""
    return await session.scalar(
        select(Consent).where(Consent.person_id == person_id, Consent.withdrawn_at.is_(None))
        .order_by(Consent.given_at.desc(), Consent.id.desc()).limit(1))


def confirmed(consent: Consent | None) -> bool:
    """A consent the family gave themselves, or confirmed after a volunteer recorded it."""
    return consent is not None and (consent.recorded_by_id is None or consent.confirmed_at is not None)


async def preference_of(session: AsyncSession, person_id: int) -> Preference | None:
    return await session.get(Preference, person_id)


async def save_preference(session: AsyncSession, person_id: int, now: datetime, **values: object) -> Preference:
    """Create or update the member's preferences with `values` (festivals=…, channel=…)."""
    preference = await session.get(Preference, person_id)
    if preference is None:
        preference = Preference(person_id=person_id)
        session.add(preference)
    for key, value in values.items():
        setattr(preference, key, value)
    preference.updated_at = now
    return preference


async def stop_all(session: AsyncSession, person_id: int, now: datetime) -> bool:
    """退订: nothing more goes to this member, including what is already queued.

    Returns False when they had already stopped (the word is harmless to repeat). Replies to what
    they are typing right now still reach them: those go through the fast path, not the queue.
    """
    preference = await session.get(Preference, person_id)
    already = preference is not None and preference.stopped_at is not None
    if not already:
        await save_preference(session, person_id, now, stopped_at=now)
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.person_id == person_id, OutboxMessage.status == OutboxStatus.QUEUED,
               OutboxMessage.kind != "reply")
        .values(status=OutboxStatus.FAILED, last_error=STOPPED_NOTE)
        .execution_options(synchronize_session=False))
    return not already


async def family_address(session: AsyncSession, person_id: int,
                         channel: str | None = None) -> ChannelAddress | None:
    """Where to reach a family member: their chosen channel if they can be reached there, else
    the unblocked address they used last. SMS only for a member with no chat address at all: it
    carries approved templates only, and a family that chats hears more warmly there."""
    query = select(ChannelAddress).where(ChannelAddress.person_id == person_id,
                                         ChannelAddress.blocked_at.is_(None))
    ordered = query.order_by(ChannelAddress.last_inbound_at.desc().nulls_last(), ChannelAddress.id.desc())
    chat = ordered.where(ChannelAddress.channel != SMS)
    if channel and channel != SMS:
        chosen = (await session.scalars(chat.where(ChannelAddress.channel == channel).limit(1))).first()
        if chosen is not None:
            return chosen
    found = (await session.scalars(chat.limit(1))).first()
    if found is not None:
        return found
    return (await session.scalars(ordered.where(ChannelAddress.channel == SMS).limit(1))).first()


async def queue_to_family(session: AsyncSession, *, person_id: int, text: str, kind: str, key: str,
                          now: datetime, not_before: datetime | None = None,
                          expires_at: datetime | None = None,
                          extra: dict[str, object] | None = None) -> OutboxMessage | None:
    """One outbox row to a family member, once per key; None when it exists or nobody to reach.

    `extra` goes into the payload beside the text (e.g. the occasion, for WeChat templates).
    """
    existing = await session.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key))
    if existing is not None:
        return None
    preference = await session.get(Preference, person_id)
    address = await family_address(session, person_id, preference.channel if preference else None)
    if address is None:
        return None
    payload = payload_of(Reply(text))
    payload.update(extra or {})
    row = OutboxMessage(idempotency_key=key, channel=address.channel, address=address.address,
                        person_id=person_id, kind=kind, payload=payload, created_at=now,
                        next_attempt_at=not_before or now, expires_at=expires_at,
                        status=OutboxStatus.QUEUED)
    session.add(row)
    await session.flush()
    return row


async def may_answer(session: AsyncSession, person_id: int) -> bool:
    """Can an answer to the member's own words be written to them (not stopped, reachable)?"""
    preference = await session.get(Preference, person_id)
    if preference is not None and preference.stopped_at is not None:
        return False
    return await family_address(session, person_id) is not None


async def member_facts(session: AsyncSession, person_id: int) -> dict[str, object]:
    """What the preference questions need to know about a member: relation, whether a birthday
    is known, the household, and the contact volunteer's name."""
    found = await membership(session, person_id)
    member, household = found if found else (None, None)
    volunteer = await volunteer_of(session, household.id if household else None)
    has_birthday = member is not None and bool(member.birth_date or (member.lunar_birth_month and member.lunar_birth_day))
    return {"relation": member.relation if member else "other", "has_birthday": has_birthday,
            "household_id": household.id if household else None,
            "volunteer": volunteer.name if volunteer else ""}


def address_of(member: HouseholdMember | None, person: Person) -> str:
    """How a message addresses a family member: their form of address (王大爷), else their name."""
    if member is not None and member.form_of_address:
        return member.form_of_address
    return person.name
