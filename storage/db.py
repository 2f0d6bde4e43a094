"""Database URLs, engines and units of work.

One URL names the database; the async driver is derived from it for the running bot and the
sync driver for the CLI, migrations and reports, so both always point at the same data.
SQLite gets WAL, foreign keys and a busy timeout on every connection.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
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
from storage.wal import WalCheckpointer

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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_timeout_ms: int = 10000) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_async_pragmas(dbapi_connection: Any, record: Any) -> None:
    """The same pragmas, but SQLite itself never sleeps on a lock (`_InlineSQLite` waits
    instead), and never checkpoints inside a step's commit (`storage.wal` does, off the loop)."""
    _sqlite_pragmas(dbapi_connection, record, busy_timeout_ms=0)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


# SQLite's own busy-handler back-off (sqliteDefaultBusyCallback), then 0.1 s steps: 10 s in all,
# as busy_timeout=10000 on the sync connections.
_BUSY_BACKOFF = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05,
                 *(0.1,) * 97)
_BUSY_CODES = frozenset({5, 261})  # SQLITE_BUSY, SQLITE_BUSY_RECOVERY (a retry can succeed)
_RETRIABLE = frozenset({"execute", "executemany", "commit"})


class _InlineSQLite(aiosqlite.Connection):
    """aiosqlite's connection, with every call run on the event loop's own thread.

    Why: a dialog step makes about ten SQLite calls of a few microseconds each, and aiosqlite
    hands every call to its worker thread and back (a queue, two thread switches, the GIL).
    Measured in benchmarks/dialog_throughput.py, those hand-offs cost more than everything
    else in the step together, and far more on a loaded machine. A local SQLite file answers
    faster than a thread switch, so the call simply runs inline.

    What must not happen is the loop blocking on another connection's write lock (that
    connection may be waiting for this very loop): these connections run with busy_timeout=0,
    and a busy statement or commit is retried after an asyncio sleep, on SQLite's own back-off
    schedule for up to 10 s, so every other task — the lock holder too — keeps running. If
    someone set a busy_timeout of their own on the connection, SQLite has already waited that
    long and the error is raised as it would have been.
    The worker thread is still started (SQLAlchemy sets the isolation level through it) but
    otherwise sleeps.
    """

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        for delay in _BUSY_BACKOFF:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", None) not in _BUSY_CODES
                        or getattr(fn, "__name__", "") not in _RETRIABLE
                        or self._connection.execute("PRAGMA busy_timeout").fetchone()[0] > 0):
                    raise
            await asyncio.sleep(delay)
        return fn(*args, **kwargs)


def _inline_sqlite_creator(path: str) -> Any:
    async def connect() -> _InlineSQLite:
        connection = _InlineSQLite(partial(sqlite3.connect, path, check_same_thread=False),
                                   iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
        await connection  # starts the connection's thread and opens the file
        return connection

    return connect


def sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database)
    return None


def create_private_file(path: Path) -> None:
    """Make an empty file only its owner can read (0600), unless it exists.

    A SQLite database created by sqlite3 itself gets 0644 (under the usual umask) and its -wal
    and -shm files copy the database file's mode, so the file is made here first; SQLite then
    opens it as an empty database.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def prepare(url: str) -> None:
    """Before anything opens a SQLite file: its folder exists and the file is private."""
    file = sqlite_file(url)
    if file is not None:
        create_private_file(file)


PREPARE_ENV = "WARMLINE_PG_PREPARE_THRESHOLD"
PREPARE_THRESHOLD = 5  # psycopg's own default


def prepare_threshold(env: Mapping[str, str] | None = None) -> int | None:
    """After how many uses psycopg prepares a statement on the server; None: never.

    Prepared, the server plans a step's statements once per connection instead of on every
    message: measured end to end (benchmarks/telegram_e2e.py, PostgreSQL), the server used 2.5
    times less CPU (1,467 against 3,687 ticks for the same run) and the bot answered more steps
    per second. `WARMLINE_PG_PREPARE_THRESHOLD=off` turns it off for a PgBouncer older than 1.21
    in transaction mode (newer ones need `max_prepared_statements` set)."""
    value = (os.environ if env is None else env).get(PREPARE_ENV, "").strip().lower()
    if not value:
        return PREPARE_THRESHOLD
    if value in ("off", "none", "never"):
        return None
    try:
        return max(0, int(value))
    except ValueError as exc:
        raise ValueError(f"{PREPARE_ENV} must be a number of uses or 'off', not {value!r}") from exc


def _pg_connect_args(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() != "postgresql":
        return {}
    return {"prepare_threshold": prepare_threshold()}


# The running bot's PostgreSQL connections. Steps run side by side ([core] max_concurrent_steps
# per channel) beside the delivery worker, the fast path's records and the heartbeat: with
# SQLAlchemy's default pool of 5 (+10 overflow) every connection past the fifth was closed when
# given back and opened again for the next step — a new server process each time, measured as
# about 7% of the bot's CPU end to end. The pool keeps one connection per concurrent step and
# `POOL_SPARE` more open, and opens up to `POOL_SPARE` more under a burst (several channels at
# once: beyond that a step waits for a connection). A worker holds at most steps + 16.
POOL_SPARE = 8
DEFAULT_STEPS = 32  # [core] max_concurrent_steps when not set (the channels' dispatcher uses it too)


def steps_at_once(concurrent_steps: int | None) -> int:
    return max(1, concurrent_steps or DEFAULT_STEPS)


def async_pool(concurrent_steps: int | None) -> dict[str, Any]:
    return {"pool_size": steps_at_once(concurrent_steps) + POOL_SPARE, "max_overflow": POOL_SPARE}


def make_sync_engine(url: str) -> Engine:
    prepare(url)
    engine = create_engine(sync_url(url), connect_args=_pg_connect_args(url))
    if is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_async_engine(url: str, concurrent_steps: int | None = None) -> AsyncEngine:
    prepare(url)
    file = sqlite_file(url)
    if file is not None:  # calls run inline on the loop (see _InlineSQLite)
        engine = create_async_engine(async_url(url), async_creator=_inline_sqlite_creator(str(file)))
        event.listen(engine.sync_engine, "connect", _sqlite_async_pragmas)
        return engine
    engine = create_async_engine(async_url(url), connect_args=_pg_connect_args(url),
                                 **({} if is_sqlite(url) else async_pool(concurrent_steps)))
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _commit_and_close(session: Session) -> None:
    session.commit()
    session.close()


class Database:
    """The one database of a process: engines made lazily, sessions handed out as units of work."""

    def __init__(self, url: str | None = None, keyring: KeyRing | None = None,
                 concurrent_steps: int | None = None) -> None:
        self.url = resolve_url(url)
        self.keyring = keyring
        self.concurrent_steps = concurrent_steps  # sizes the async pool (PostgreSQL)
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        self._sync_factory: sessionmaker[Session] | None = None
        self._async_factory: async_sessionmaker[AsyncSession] | None = None
        self._checkpoints: WalCheckpointer | None = None

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
            self._async = make_async_engine(self.url, self.concurrent_steps)
            setattr(self._async.sync_engine.dialect, KEYRING_ATTR, self.keyring)
            file = sqlite_file(self.url)
            if file is not None:  # the loop's connections leave checkpoints to this thread
                self._checkpoints = WalCheckpointer(file, owner=self)
            self._async_factory = async_sessionmaker(self._async, expire_on_commit=False)
        return self._async

    @property
    def checkpoints(self) -> WalCheckpointer | None:
        """The thread copying the log back (a SQLite file whose async engine is in use)."""
        return self._checkpoints

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends normally, rolls back on any error."""
        self.sync_engine  # noqa: B018 - creates the factory
        assert self._sync_factory is not None
        with self._sync_factory() as session, session.begin():
            yield session

    @asynccontextmanager
    async def async_session(self) -> AsyncIterator[AsyncSession]:
        """The async unit of work: commit on success, rollback on error.

        The commit and the close go to SQLAlchemy's greenlet together, and the unit of work
        then gives way to the loop once, as AsyncSession's own context did by closing in a task
        of its own. Why: that context costs two greenlet hops and a task on every unit of
        work (about 5 % of a dialog step), but closing in place without giving way cost 3–10 %
        of the throughput end to end through `warmline run` on SQLite — a step then runs on
        into its sends (benchmarks/telegram_e2e.py, alternating runs, 2026-12-02). A failed
        unit of work is rolled back and closed as before, shielded from cancellation."""
        self.async_engine  # noqa: B018
        assert self._async_factory is not None
        session = self._async_factory()
        try:
            yield session
            await session.run_sync(_commit_and_close)
        except BaseException:
            await asyncio.shield(session.close())  # rolls back what the unit of work began
            raise
        await asyncio.sleep(0)

    async def open_pool(self, within: float = 10.0) -> int:
        """Open one connection per concurrent step before the first message; how many opened.

        Why: a service starts to a burst (a county's volunteers after a restart, everyone who
        wrote while it was down), and a PostgreSQL pool opened on demand made that burst's
        steps pay for 32 connections (a server process and a handshake each) while they ran.
        SQLite's connections cost nothing to open and are left as they are. A server that
        cannot be reached, or not within `within` seconds, is not an error here (nor does it
        hold the start up): the steps report it as they always have."""
        if is_sqlite(self.url):
            return 0
        engine = self.async_engine
        connections = [engine.connect() for _ in range(steps_at_once(self.concurrent_steps))]
        try:
            opened = await asyncio.wait_for(
                asyncio.gather(*(c.start() for c in connections), return_exceptions=True), within)
        except TimeoutError:
            opened = []
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
        return sum(1 for o in opened if not isinstance(o, BaseException))

    def dispose(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
            self._sync = None

    async def adispose(self) -> None:
        if self._async is not None:
            await self._async.dispose()
            self._async = None
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        self.dispose()
