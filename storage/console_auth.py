"""Sign-in links, 6-digit codes and sessions of the web console — the one place their rules live.

Who may use the console at all is `CONSOLE_ROLES` (coordinators and admins); the chat dialog
that hands out links, the sign-in pages and every page load ask `may_use_console`, so a
volunteer or a family member never gets a link, and a coordinator whose role changes loses
their sessions at the next click.

Links and sessions are `ActionToken` rows ("an opaque token that stands for an action, resolved
only for its own address"): the address is the person's id, the channel says which kind, and
only a hash of the secret is stored, so a copy of the database opens nothing. A link is used
once (a link and its code are the same row: using either spends both) and expires within
minutes; a session expires after hours and is ended by signing out (one browser) or signing out
everywhere (every browser of that person).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ActionToken, InviteFailure, Person, Role

CONSOLE_ROLES = frozenset({Role.COORDINATOR, Role.ADMIN})
LINK = "web-link"
SESSION = "web-session"
FAILURES = "web"  # InviteFailure channel for wrong codes, by client address
CODE_DIGITS = 6


def may_use_console(person: Person | None) -> bool:
    return person is not None and person.active and person.role in CONSOLE_ROLES


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def _code_digest(code: str, link_digest: str) -> str:
    return hashlib.sha256(f"{link_digest}:{code}".encode()).hexdigest()


async def issue_link(session: AsyncSession, person: Person, now: datetime,
                     ttl: timedelta) -> tuple[str, str] | None:
    """A new single-use sign-in (link token, 6-digit code), or None if this person may not sign in.

    Earlier unused links of the same person are spent, so only the newest one works.
    """
    if not may_use_console(person):
        return None
    await session.execute(update(ActionToken).where(
        ActionToken.channel == LINK, ActionToken.address == str(person.id),
        ActionToken.used_at.is_(None)).values(used_at=now))
    token = secrets.token_urlsafe(24)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    digest = _digest(token)
    session.add(ActionToken(token=digest, channel=LINK, address=str(person.id),
                            action={"code": _code_digest(code, digest)}, created_at=now,
                            expires_at=now + ttl))
    await session.flush()
    return token, code


async def _spend(session: AsyncSession, row: ActionToken | None, now: datetime) -> Person | None:
    if row is None or row.channel != LINK or row.used_at is not None or row.expires_at is None \
            or row.expires_at <= now:
        return None
    row.used_at = now
    person = await session.get(Person, int(row.address))
    return person if may_use_console(person) else None


async def redeem_link(session: AsyncSession, token: str, now: datetime) -> Person | None:
    """The person a link signs in (spending it), or None for a used, expired or unknown link."""
    if not token or len(token) > 64:
        return None
    return await _spend(session, await session.get(ActionToken, _digest(token)), now)


async def peek_link(session: AsyncSession, token: str, now: datetime) -> bool:
    """Whether a link could still be used (the confirmation page says so before the click)."""
    if not token or len(token) > 64:
        return False
    row = await session.get(ActionToken, _digest(token))
    return row is not None and row.channel == LINK and row.used_at is None \
        and row.expires_at is not None and row.expires_at > now


async def code_locked(session: AsyncSession, client: str, now: datetime, *, max_failures: int,
                      window: timedelta) -> bool:
    failures = await session.scalar(select(func.count()).select_from(InviteFailure).where(
        InviteFailure.channel == FAILURES, InviteFailure.address == client[:128],
        InviteFailure.at > now - window))
    return (failures or 0) >= max_failures


async def redeem_code(session: AsyncSession, code: str, client: str, now: datetime) -> Person | None:
    """The person whose live link has this code (spending it); a miss counts against `client`."""
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) == CODE_DIGITS:
        rows = await session.scalars(select(ActionToken).where(
            ActionToken.channel == LINK, ActionToken.used_at.is_(None), ActionToken.expires_at > now))
        for row in rows:
            if hmac.compare_digest(str(row.action.get("code", "")), _code_digest(code, row.token)):
                return await _spend(session, row, now)
    session.add(InviteFailure(channel=FAILURES, address=client[:128], at=now))
    return None


async def open_session(session: AsyncSession, person: Person, now: datetime,
                       ttl: timedelta) -> str:
    """A new browser session for `person`; returns the secret the cookie carries."""
    secret = secrets.token_urlsafe(32)
    session.add(ActionToken(token=_digest(secret), channel=SESSION, address=str(person.id),
                            action={}, created_at=now, expires_at=now + ttl))
    await session.flush()
    return secret


async def session_person(session: AsyncSession, secret: str, now: datetime) -> Person | None:
    """Who this live session belongs to, if they may still use the console."""
    if not secret or len(secret) > 64:
        return None
    row = await session.get(ActionToken, _digest(secret))
    if row is None or row.channel != SESSION or row.used_at is not None or row.expires_at is None \
            or row.expires_at <= now:
        return None
    person = await session.get(Person, int(row.address))
    return person if may_use_console(person) else None


async def end_session(session: AsyncSession, secret: str, now: datetime) -> None:
    await session.execute(update(ActionToken).where(
        ActionToken.token == _digest(secret), ActionToken.channel == SESSION,
        ActionToken.used_at.is_(None)).values(used_at=now))


async def end_all_sessions(session: AsyncSession, person_id: int, now: datetime) -> int:
    """Sign a person out of every browser; returns how many sessions were ended."""
    result = await session.execute(update(ActionToken).where(
        ActionToken.channel == SESSION, ActionToken.address == str(person_id),
        ActionToken.used_at.is_(None)).values(used_at=now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
