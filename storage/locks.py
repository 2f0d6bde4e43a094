"""Electing one leader among processes that share a database (the scheduler, so plans are made once).

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) taken on a connection this
process keeps open while it leads. If the process dies, its connection closes and the server
frees the lock at once; if the connection is lost, the next `renew()` notices and gives up
leadership, so two leaders never believe they lead for longer than one tick.
SQLite (and any other database): a row in `leases` with a holder and an expiry, taken when free
or expired and renewed each tick; a dead leader is replaced once its lease runs out.

    lock = LeaderLock(app.db, "scheduler", ttl=timedelta(minutes=3), now=app.services.now)
    if await lock.try_acquire():   # call every tick: acquires, or renews what it holds
        ...                        # lead
    await lock.release()           # on shutdown (or `async with leadership(...) as lock:`)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.base import utcnow
from storage.db import Database
from storage.models import Lease

log = logging.getLogger("warmline.locks")


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(f"warmline:{name}".encode()).digest()[:8], "big", signed=True)


def default_holder() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaderLock:
    """One process's claim to lead `name`. `try_acquire()` both takes and renews it."""

    def __init__(self, db: Database, name: str, *, ttl: timedelta = timedelta(minutes=3),
                 holder: str | None = None, now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.name = name
        self.ttl = ttl
        self.holder = holder or default_holder()
        self.now = now
        self.is_leader = False
        self._pg = db.url.startswith("postgresql")
        self._conn: AsyncConnection | None = None

    async def try_acquire(self) -> bool:
        """True if this process leads now (newly or still). Never raises for a lost database:
        an error means "not leader" until a later call succeeds."""
        was = self.is_leader
        try:
            self.is_leader = await (self._pg_acquire() if self._pg else self._lease_acquire())
        except Exception as exc:
            log.warning("leader check failed lock=%s error=%s", self.name, type(exc).__name__)
            await self._drop_connection()
            self.is_leader = False
        if self.is_leader != was:
            log.info("leadership %s lock=%s holder=%s", "taken" if self.is_leader else "lost",
                     self.name, self.holder)
        return self.is_leader

    renew = try_acquire

    async def release(self) -> None:
        """Step down now, so another process can lead without waiting for an expiry."""
        try:
            if self._pg:
                if self._conn is not None and self.is_leader:
                    await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                             {"k": advisory_key(self.name)})
                    await self._conn.commit()
            elif self.is_leader:
                async with self.db.async_session() as session:
                    await session.execute(delete(Lease).where(Lease.name == self._lease_name,
                                                              Lease.holder == self.holder))
        except Exception as exc:
            log.warning("leader release failed lock=%s error=%s", self.name, type(exc).__name__)
        finally:
            await self._drop_connection()
            self.is_leader = False

    # ---------------------------------------------------------------- PostgreSQL

    async def _pg_acquire(self) -> bool:
        if self._conn is not None and self.is_leader:
            await self._conn.execute(text("SELECT 1"))  # still connected = still holding
            await self._conn.commit()
            return True
        if self._conn is None:
            self._conn = await self.db.async_engine.connect()
        got = await self._conn.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                      {"k": advisory_key(self.name)})
        await self._conn.commit()
        if not got:  # give the connection back; try again next tick
            await self._drop_connection()
        return bool(got)

    async def _drop_connection(self) -> None:
        """Close the lock connection for good (never back to the pool, where a session lock
        could linger): the server frees whatever it held."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    # ------------------------------------------------------------------- lease

    @property
    def _lease_name(self) -> str:
        return f"leader:{self.name}"

    async def _lease_acquire(self) -> bool:
        now = self.now()
        try:
            async with self.db.async_session() as session:
                lease = await session.scalar(select(Lease).where(Lease.name == self._lease_name))
                if lease is None:
                    session.add(Lease(name=self._lease_name, holder=self.holder,
                                      expires_at=now + self.ttl))
                    return True
                free = lease.expires_at is None or lease.expires_at <= now
                if lease.holder != self.holder and not free:
                    return False
                lease.holder = self.holder
                lease.expires_at = now + self.ttl
                return True
        except IntegrityError:  # another process inserted the lease first
            return False


@asynccontextmanager
async def leadership(db: Database, name: str, **options: object) -> AsyncIterator[LeaderLock]:
    """A LeaderLock released when the block ends (however it ends)."""
    lock = LeaderLock(db, name, **options)  # type: ignore[arg-type]
    try:
        yield lock
    finally:
        await lock.release()
