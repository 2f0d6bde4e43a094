"""Invite codes: short enough to read over the phone, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import InviteCode, InviteFailure, Township

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: people read these aloud
CODE_LENGTH = 8


def normalize_code(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").upper()
    return "".join(ch for ch in text if ch.isalnum())


def hash_code(code: str) -> str:
    return hashlib.sha256(("warmline-invite:" + normalize_code(code)).encode()).hexdigest()


def generate_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def looks_like_code(text: str) -> bool:
    code = normalize_code(text)
    return len(code) == CODE_LENGTH and all(ch in ALPHABET for ch in code)


def create_invite(session: Session, *, role: str, now: datetime, ttl: timedelta,
                  township: str | None = None, household_id: int | None = None,
                  person_id: int | None = None, created_by_id: int | None = None) -> str:
    """Create a single-use code and return it in clear text (the only time it exists so)."""
    township_id = None
    if township:
        found = session.scalar(select(Township).where(func.lower(Township.name) == township.lower()))
        if found is None:
            raise LookupError(township)
        township_id = found.id
    code = generate_code()
    session.add(InviteCode(code_hash=hash_code(code), role=role, township_id=township_id,
                           household_id=household_id, person_id=person_id,
                           created_by_id=created_by_id, created_at=now, expires_at=now + ttl))
    return code


async def guessing_locked(session: AsyncSession, *, channel: str, address: str, now: datetime,
                          window: timedelta, per_address: int, county_wide: int) -> bool:
    """Whether code entry is refused now: too many wrong codes from this address, or from all
    addresses together, within the window.

    The per-address limit stops one chat guessing; the county-wide one stops a guesser who
    spreads the guesses over many chat accounts (each under its own limit). While the
    county-wide limit holds, honest newcomers wait too — the price of keeping codes unguessable;
    codes are single use and expire, so the window is short.
    """
    since = now - window
    mine = await session.scalar(select(func.count()).select_from(InviteFailure).where(
        InviteFailure.channel == channel, InviteFailure.address == address, InviteFailure.at > since))
    if (mine or 0) >= per_address:
        return True
    everyone = await session.scalar(select(func.count()).select_from(InviteFailure).where(InviteFailure.at > since))
    return (everyone or 0) >= county_wide
