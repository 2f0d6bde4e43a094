"""Who a message goes to: a person's preferred address, their chosen channel, or "none"
(unrouted) until they link an address; and moving those rows once they do."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    ActionToken,
    ChannelAddress,
    OutboxMessage,
    OutboxStatus,
    Preference,
)
from storage.outbox.common import (
    SMS,
    UNROUTED,
    Recipient,
)

# ------------------------------------------------------------------ address rules


def _pick(addresses: Sequence[tuple[str, str]], channel: str | None) -> tuple[str, str] | None:
    """The address rule, over a person's unblocked (channel, address) pairs, most recently used
    first: on `channel` if they can be reached there (a family member's chosen channel), else
    the last chat address they used, and SMS only for someone with no chat address at all — it
    carries approved templates only, and a person who chats hears more warmly there."""
    chat = [a for a in addresses if a[0] != SMS]
    if channel and channel != SMS:
        for pair in chat:
            if pair[0] == channel:
                return pair
    if chat:
        return chat[0]
    return next((a for a in addresses if a[0] == SMS), None)


def _by_recency(person_ids: Sequence[int]) -> Any:
    return (select(ChannelAddress)
            .where(ChannelAddress.person_id.in_(list(person_ids)), ChannelAddress.blocked_at.is_(None))
            .order_by(ChannelAddress.person_id, ChannelAddress.last_inbound_at.desc().nulls_last(),
                      ChannelAddress.id.desc()))


async def preferred_address(session: AsyncSession, person_id: int,
                            channel: str | None = None) -> ChannelAddress | None:
    """Where to reach a person (the rule in `_pick`), as their ChannelAddress."""
    rows = list(await session.scalars(_by_recency([person_id])))
    chosen = _pick([(a.channel, a.address) for a in rows], channel)
    return next((a for a in rows if (a.channel, a.address) == chosen), None)


async def preferred_addresses(session: AsyncSession, person_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """`preferred_address` for many people in two queries: {person_id: (channel, address)}."""
    ids = sorted(set(person_ids))
    if not ids:
        return {}
    pairs: dict[int, list[tuple[str, str]]] = {}
    chosen: dict[int, str] = {}
    for i in range(0, len(ids), 10_000):  # PostgreSQL takes at most 65,535 parameters a statement
        part = ids[i:i + 10_000]
        for row in await session.execute(_by_recency(part).with_only_columns(
                ChannelAddress.person_id, ChannelAddress.channel, ChannelAddress.address)):
            pairs.setdefault(row[0], []).append((row[1], row[2]))
        chosen.update((person_id, str(channel)) for person_id, channel in await session.execute(
            select(Preference.person_id, Preference.channel).where(
                Preference.person_id.in_(part), Preference.channel.is_not(None))))
    out: dict[int, tuple[str, str]] = {}
    for person_id, found in pairs.items():
        pick = _pick(found, chosen.get(person_id))
        if pick is not None:
            out[person_id] = pick
    return out


async def person_recipient(session: AsyncSession, person_id: int, *,
                           hold_until_linked: bool = True) -> Recipient | None:
    """A person's recipient. Without an address: unrouted (channel "none", sent once they link
    one, see `route_waiting`) if `hold_until_linked`, else None (nobody to reach).

    Family members are reached on the channel they chose (their Preference) when they can be.
    """
    preference = await session.get(Preference, person_id)
    address = await preferred_address(session, person_id, preference.channel if preference else None)
    if address is not None:
        return Recipient(address.channel, address.address, person_id)
    if hold_until_linked:
        return Recipient(UNROUTED, str(person_id), person_id)
    return None


# Messages that wait for the end of quiet hours when an address is linked in them (an alert does not).
QUIET_KINDS = frozenset({"reminder", "greeting", "digest"})


async def route_waiting(session: AsyncSession, person_id: int, channel: str, address: str, *,
                        quiet_until: datetime | None = None) -> int:
    """Give rows queued while a person had no address (channel "none") their new address.

    Called wherever an address is first linked to a person, so an alert written before a
    coordinator ever opened the bot still reaches them; their buttons move along. With
    `quiet_until` (the link is made in quiet hours), a digest, reminder or greeting that was due
    earlier waits until then — as scheduled, so it does not hold back the person's replies.
    """
    rows = list(await session.scalars(select(OutboxMessage).where(
        OutboxMessage.channel == UNROUTED, OutboxMessage.person_id == person_id,
        OutboxMessage.status == OutboxStatus.QUEUED)))
    for row in rows:
        row.channel, row.address, row.last_error = channel, address, None
        if quiet_until is not None and row.kind in QUIET_KINDS and row.next_attempt_at < quiet_until:
            row.next_attempt_at = row.not_before = quiet_until
    tokens = await session.scalars(select(ActionToken).where(
        ActionToken.channel == UNROUTED, ActionToken.address == str(person_id)))
    for token in tokens:
        token.channel, token.address = channel, address
    return len(rows)
