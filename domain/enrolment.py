"""Joining Warmline: invite codes, the guard against guessing them, and linking an address.

A code is checked against its hash; wrong codes from one address are counted, and past
`invite_max_failures` within `invite_failure_window` that address is locked out for a while;
past `invite_max_failures_global` from all addresses together, every address is
(`storage.invites.guessing_locked`).
Registering binds the chat address to a person (the invited person, a chosen member of the
invited household, or someone new) and gives them the messages that waited for an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.messages import route_waiting
from domain.services import Services
from storage.invites import guessing_locked, hash_code, normalize_code
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


@dataclass(frozen=True)
class CodeCheck:
    """What a code opened: `problem` is locked | used | expired | bad_code, else the invite."""

    problem: str | None
    invite: InviteCode | None = None
    person_name: str | None = None
    township_name: str | None = None


async def check_code(session: AsyncSession, *, channel: str, address: str, text: str,
                     now: datetime, window: timedelta, max_failures: int,
                     looks_like_code: bool, max_failures_global: int = 50) -> CodeCheck:
    if await guessing_locked(session, channel=channel, address=address, now=now, window=window,
                             per_address=max_failures, county_wide=max_failures_global):
        return CodeCheck("locked")
    if not looks_like_code:
        return CodeCheck("bad_code")  # not a guess: words, a greeting, a typo in length
    invite = await session.scalar(select(InviteCode).where(InviteCode.code_hash == hash_code(normalize_code(text))))
    if invite is None or invite.used_at is not None or invite.expires_at <= now:
        session.add(InviteFailure(channel=channel, address=address, at=now))
        if invite is not None and invite.used_at is not None:
            return CodeCheck("used")
        return CodeCheck("expired" if invite is not None else "bad_code")
    person = await session.get(Person, invite.person_id) if invite.person_id else None
    township = await session.get(Township, invite.township_id) if invite.township_id else None
    return CodeCheck(None, invite, person.name if person else None,
                     (township.name if township else "") if invite.township_id else None)


async def link_address(session: AsyncSession, person: Person, channel: str, address: str,
                       services: Services) -> None:
    """Bind the address; messages that waited for one get it (in quiet hours, later)."""
    now = services.now()
    session.add(ChannelAddress(person_id=person.id, channel=channel, address=address,
                               created_at=now, last_inbound_at=now))
    await route_waiting(session, person.id, channel, address, services)


async def registered_family(session: AsyncSession, household_id: int) -> list[tuple[HouseholdMember, Person]]:
    """The household's members who may register themselves (family, active)."""
    household = await session.get(Household, household_id)
    if household is None or household.erased_at is not None:
        return []
    return [(m, p) for m, p in await members_of(session, household.id) if p.role == "family" and p.active]
