"""Database URLs, engines and units of work.

One URL names the database; the async driver is derived from it for the running bot and the
sync driver for the CLI, migrations and reports, so both always point at the same data.
SQLite gets WAL, foreign keys and a busy timeout on every connection.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from storage.crypto import KEYRING_ATTR, KeyRing

DEFAULT_DB_FILE = "warmline.db"

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


def resolve_url(explicit: str | None = None) -> str:
    """The database URL: --db, else WARMLINE_DATABASE_URL, else ./warmline.db."""
    url = explicit or os.environ.get("WARMLINE_DATABASE_URL")
    if not url:
        return f"sqlite:///{Path(DEFAULT_DB_FILE).resolve()}"
    if "://" not in url:  # a bare file path
        return f"sqlite:///{Path(url).resolve()}"
    return url


def _with_driver(url: str, drivers: dict[str, str]) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in drivers:
        parsed = parsed.set(drivername=drivers[backend])
    return parsed


def sync_url(url: str) -> URL:
    return _with_driver(url, _SYNC_DRIVERS)


def async_url(url: str) -> URL:
    return _with_driver(url, _ASYNC_DRIVERS)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database)
    return None


def _prepare(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def make_sync_engine(url: str) -> Engine:
    _prepare(url)
    engine = create_engine(sync_url(url))
    if is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_async_engine(url: str) -> AsyncEngine:
    _prepare(url)
    engine = create_async_engine(async_url(url))
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """The one database of a process: engines made lazily, sessions handed out as units of work."""

    def __init__(self, url: str | None = None, keyring: KeyRing | None = None) -> None:
        self.url = resolve_url(url)
        self.keyring = keyring
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        self._sync_factory: sessionmaker[Session] | None = None
        self._async_factory: async_sessionmaker[AsyncSession] | None = None

    @property
    def sync_engine(self) -> Engine:
        if self._sync is None:
            self._sync = make_sync_engine(self.url)
            setattr(self._sync.dialect, KEYRING_ATTR, self.keyring)
            self._sync_factory = sessionmaker(self._sync, expire_on_commit=False)
        return self._sync

    @property
    def async_engine(self) -> AsyncEngine:
        if self._async is None:
            self._async = make_async_engine(self.url)
            setattr(self._async.sync_engine.dialect, KEYRING_ATTR, self.keyring)
            self._async_factory = async_sessionmaker(self._async, expire_on_commit=False)
        return self._async

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends normally, rolls back on any error."""
        self.sync_engine  # noqa: B018 - creates the factory
        assert self._sync_factory is not None
        with self._sync_factory() as session, session.begin():
            yield session

    @asynccontextmanager
    async def async_session(self) -> AsyncIterator[AsyncSession]:
        """The async unit of work: commit on success, rollback on error."""
        self.async_engine  # noqa: B018
        assert self._async_factory is not None
        async with self._async_factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
            self._sync = None

    async def adispose(self) -> None:
        if self._async is not None:
            await self._async.dispose()
            self._async = None
        self.dispose()
