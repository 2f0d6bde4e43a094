"""Statements every message runs, compiled once and run on the unit of work's own connection.

Why: a dialog step runs the same handful of statements on every message (its session row, the
platform message id, the session's write, the reply's outbox row, "sent"). Through
`AsyncSession.execute` each one builds an execution context, a result object and two greenlet
switches around the driver call; measured in benchmarks/dialog_throughput.py that machinery
cost about three times the database's own work for these statements. A `Prepared` statement is
compiled by SQLAlchemy once per dialect and then handed straight to the driver connection of
the session's transaction — the same connection and transaction, so it commits or rolls back
with everything else the step did.

SQLAlchemy still owns every rule of the mapping: the SQL is its compilation, parameters go
through the columns' own bind processors (encryption, UTC datetimes, JSON) and results through
their result processors. Only what the hot path needs is supported: plain bound parameters
(no expanding IN), Python-side column defaults on INSERT, RETURNING.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement, ColumnElement

Processor = Callable[[Any], Any] | None

__all__ = ["Pending", "Prepared", "driver_connection", "pipelined", "statements_run"]

_ran = [0]


class _SecondaryPipelineError(logging.Filter):
    """Drops psycopg's "error ignored terminating <pipeline>: pipeline aborted" warning.

    Why: when a statement in a pipeline fails (a platform's retry of a message already handled
    hits the processed-message key), psycopg raises that error and, leaving the pipeline, logs the
    follow-on "pipeline aborted" as a warning with the connection's description. The first error
    is what the step reports; the second is only its echo, and read like a fault in the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(_SecondaryPipelineError())
_COMMITTED = "_prepared_committed"  # session.info: the transaction pipelined(commit=True) ended


def statements_run() -> int:
    """How many prepared statements this process has run (benchmarks count statements per step)."""
    return _ran[0]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None  # parameter names in order (positional styles); None: by name
    fixed: dict[str, Any]  # values bound by the statement itself
    processors: dict[str, Callable[[Any], Any]]  # only the parameters that have one
    defaults: tuple[tuple[str, Any], ...]  # INSERT columns filled by their Python-side default
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # result columns that have a processor
    ordered: tuple[tuple[str, Processor], ...] | None = None  # `order` with each one's processor

    def __post_init__(self) -> None:
        if self.order is not None:
            object.__setattr__(self, "ordered", tuple((name, self.processors.get(name)) for name in self.order))


class Prepared:
    """One Core statement (SELECT, INSERT, UPDATE, with or without RETURNING) for the hot path.

    `keys` names the parameters every call passes; for an INSERT or UPDATE they are also the
    columns it writes (as `session.execute(statement, params)` would infer from the first call).
    """

    def __init__(self, statement: ClauseElement, keys: Sequence[str] = ()) -> None:
        self.statement = statement
        self.keys = tuple(keys)
        # per dialect object, not per dialect name: the processors close over the dialect, and
        # through it over its database's data key (two databases may hold different keys)
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled: Any = self.statement.compile(dialect=dialect, column_keys=list(self.keys))
        sql = compiled.string
        if "POSTCOMPILE" in sql:
            raise ValueError("a prepared statement takes plain bound parameters only")
        processors = {name: processor for bind, name in compiled.bind_names.items()
                      if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        defaults = tuple((column.key, column.default.arg) for column in compiled.insert_prefetch)
        if compiled.update_prefetch:
            raise ValueError("a prepared UPDATE must set every column that has an onupdate")
        columns: Sequence[ColumnElement[Any]] = list(getattr(self.statement, "exported_columns", ()))
        results = tuple((i, processor) for i, column in enumerate(columns)
                        if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None)))
        order = tuple(compiled.positiontup) if compiled.positional else None
        # the values SQLAlchemy binds itself (literals in the statement, None for a NULL set):
        # the same on every call, so worked out once; each call's parameters go over them
        fixed = {name: value for name, value in compiled.construct_params(_check=False).items()
                 if name not in self.keys}
        return _Compiled(sql, order, fixed, processors, defaults, results)

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect)
        if found is None:
            found = self._compiled[dialect] = self._compile(dialect)
        return found

    def _parameters(self, plan: _Compiled, params: Mapping[str, Any]) -> Any:
        if plan.defaults:
            params = dict(params)
            for key, default in plan.defaults:
                params[key] = default(None) if callable(default) else default
        values = {**plan.fixed, **params}
        if plan.ordered is not None:
            return [values[name] if processor is None else processor(values[name])
                    for name, processor in plan.ordered]
        processors = plan.processors
        return {name: processors[name](value) if name in processors else value
                for name, value in values.items()}

    async def rows(self, session: AsyncSession, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run it and return every row, its values converted as SQLAlchemy would."""
        connection, plan, dialect = await _connection_and_plan(session, self)
        try:
            fetched = await _fetch(dialect.name, connection, plan.sql, self._parameters(plan, params))
        except dialect.loaded_dbapi.Error as exc:
            raise _translated(plan, exc, dialect) from exc
        return _converted(plan, fetched)

    async def send(self, session: AsyncSession, params: Mapping[str, Any]) -> Pending:
        """Run it, its rows to be read later (`Pending.rows`).

        Inside `pipelined(session, commit=True)` on PostgreSQL, reading the rows after the block
        lets the statement travel with the block's other statements and the COMMIT: reading
        them inside would wait for an answer there. Elsewhere it is `rows` in two halves."""
        connection, plan, dialect = await _connection_and_plan(session, self)
        parameters = self._parameters(plan, params)
        try:
            if dialect.name == "sqlite":
                return Pending(plan, fetched=await _fetch(dialect.name, connection, plan.sql, parameters))
            _ran[0] += 1
            cursor = connection.cursor()
            await cursor.execute(plan.sql, parameters)
            return Pending(plan, cursor=cursor)
        except dialect.loaded_dbapi.Error as exc:
            raise _translated(plan, exc, dialect) from exc

    async def first(self, session: AsyncSession, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        found = await self.rows(session, params)
        return found[0] if found else None

    async def opening(self, session: AsyncSession, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of the statement that opens the unit of work's transaction: on PostgreSQL its
        BEGIN goes in the same round trip (see `_opened`). Anywhere else it is `rows`."""
        bind = session.bind
        if bind is None or bind.dialect.name != "postgresql" or session.sync_session.in_transaction():
            return await self.rows(session, params)
        dialect = bind.dialect
        plan = self._for(dialect)
        _ran[0] += 1
        try:
            async with _opened(session) as connection:
                cursor = connection.cursor()
                await cursor.execute(plan.sql, self._parameters(plan, params))
            try:
                fetched = list(await cursor.fetchall())
            finally:
                await cursor.close()
        except dialect.loaded_dbapi.Error as exc:
            raise _translated(plan, exc, dialect) from exc
        return _converted(plan, fetched)

    async def run(self, session: AsyncSession, params: Mapping[str, Any]) -> int:
        """Run it without rows back; the number of rows it changed."""
        return await self._run(session, [params])

    async def run_many(self, session: AsyncSession, many: Sequence[Mapping[str, Any]]) -> int:
        """Run it once per parameter set, in one driver call; the rows changed in all."""
        return await self._run(session, many) if many else 0

    async def _run(self, session: AsyncSession, many: Sequence[Mapping[str, Any]]) -> int:
        connection, plan, dialect = await _connection_and_plan(session, self)
        try:
            return await _run(dialect.name, connection, plan.sql, [self._parameters(plan, p) for p in many])
        except dialect.loaded_dbapi.Error as exc:
            raise _translated(plan, exc, dialect) from exc


class Pending:
    """A statement's rows, sent but not yet read (`Prepared.send`)."""

    def __init__(self, plan: _Compiled, *, fetched: list[Any] | None = None, cursor: Any = None) -> None:
        self._plan, self._fetched, self._cursor = plan, fetched, cursor

    async def rows(self) -> list[tuple[Any, ...]]:
        if self._fetched is None:
            try:
                self._fetched = list(await self._cursor.fetchall())
            finally:
                await self._cursor.close()
        return _converted(self._plan, self._fetched)


def _converted(plan: _Compiled, fetched: list[Any]) -> list[tuple[Any, ...]]:
    """Rows with each value through its column's result processor (only the columns that have
    one are visited: the session read has two dozen columns and a handful of processors)."""
    if not plan.results:
        return [tuple(row) for row in fetched]
    converted = []
    for row in fetched:
        values = list(row)
        for i, processor in plan.results:
            values[i] = processor(values[i])
        converted.append(tuple(values))
    return converted


def _translated(plan: _Compiled, exc: Exception, dialect: Dialect) -> Exception:
    """The driver's error as SQLAlchemy's (IntegrityError for a duplicate key, …), as
    `session.execute` would raise it; the parameters are left out (they may be personal)."""
    return DBAPIError.instance(plan.sql, None, exc, dialect.loaded_dbapi.Error,
                               hide_parameters=True, dialect=dialect)


# The two drivers' own async APIs (aiosqlite — inline on the loop, see storage.db — and psycopg).

async def _fetch(dialect: str, connection: Any, sql: str, parameters: Any) -> list[Any]:
    _ran[0] += 1
    if dialect == "sqlite":
        cursor = await connection.execute(sql, parameters)
        try:
            return list(await cursor.fetchall())
        finally:
            await cursor.close()
    async with connection.cursor() as cursor:
        await cursor.execute(sql, parameters)
        return list(await cursor.fetchall())


async def _run(dialect: str, connection: Any, sql: str, many: list[Any]) -> int:
    _ran[0] += 1
    if dialect == "sqlite":
        cursor = await (connection.execute(sql, many[0]) if len(many) == 1
                        else connection.executemany(sql, many))
        count = cursor.rowcount
        await cursor.close()
        return int(count)
    async with connection.cursor() as cursor:
        if len(many) == 1:
            await cursor.execute(sql, many[0])
        else:
            await cursor.executemany(sql, many)
        return int(cursor.rowcount)


@asynccontextmanager
async def pipelined(session: AsyncSession, *, commit: bool = False) -> AsyncIterator[None]:
    """Prepared statements in this block go to PostgreSQL without waiting for each answer: a
    statement's result is awaited only when its rows are read, so a step's writes (the message
    id, the session row, the reply) cost one round trip instead of three. An error surfaces at
    the next read or at the end of the block, as the same SQLAlchemy error. On SQLite, whose
    calls are local, nothing changes.

    `commit=True`: the block is the transaction's last work, and its COMMIT travels in the same
    round trip (read `Prepared.send` rows after the block): a step's waits on PostgreSQL went
    from 6.6 to 3.6 and the runner's steps per CPU-second from 462 to 577–599
    (benchmarks/dialog_throughput.py; 2.6 waits since the first read carries the BEGIN). The session's own commit
    afterwards finds nothing left to do; using the session for anything but reading those rows
    after the block is an error.

    Only prepared statements belong inside: what the ORM has pending is written first, and a
    row count is not known inside the block. A block that opens its transaction sends the
    BEGIN with it (`_opened`): the "sent" ledger's batch is one round trip."""
    bind = session.bind
    if bind is None or bind.dialect.name != "postgresql":
        yield
        return
    await _flush_pending(session)
    try:
        async with _pipeline_of(session) as connection:
            yield
            if commit:
                if session.new or session.dirty or session.deleted:
                    raise RuntimeError("ORM changes inside a pipelined block would miss its COMMIT")
                await connection.execute("COMMIT", prepare=False)
                session.info[_COMMITTED] = session.sync_session.get_transaction()
    except bind.dialect.loaded_dbapi.Error as exc:  # raised when the block's last answers came
        raise DBAPIError.instance(None, None, exc, bind.dialect.loaded_dbapi.Error,
                                  hide_parameters=True, dialect=bind.dialect) from exc


async def driver_connection(session: AsyncSession) -> Any:
    """The driver's own connection under the session's transaction (begun if it was not).

    Remembered for the transaction: asking SQLAlchemy for it costs a greenlet round trip."""
    transaction = session.sync_session.get_transaction()
    remembered = session.info.get("_driver")
    if transaction is not None and remembered is not None and remembered[0] is transaction:
        return remembered[1]
    raw = await session.run_sync(_driver_of)
    session.info["_driver"] = (session.sync_session.get_transaction(), raw)
    return raw


_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


@asynccontextmanager
async def _opened(session: AsyncSession) -> AsyncIterator[Any]:
    """A pipeline on the connection of a transaction that has not begun, whose first command
    is its BEGIN (PostgreSQL; yields the driver connection).

    Why: psycopg sends a transaction's BEGIN on its own and waits for its answer before the
    first statement, also inside a pipeline, so every dialog step paid a round trip for BEGIN
    before its first read (3.6 waits a step; 2.6 with this, benchmarks/dialog_throughput.py's
    runner on PostgreSQL). Here the connection is taken in autocommit mode for this
    transaction, so psycopg sends no BEGIN, and the pipeline sends one ahead of the statements:
    everything after it is inside that transaction as before, and the session's commit or
    rollback ends it (psycopg commits or rolls back whatever transaction the server has open).
    SQLAlchemy sets the connection back to its usual mode when it returns to the pool."""
    connection = await session.run_sync(_opening_driver_of)
    session.info["_driver"] = (session.sync_session.get_transaction(), connection)
    async with connection.pipeline():
        await connection.execute("BEGIN", prepare=False)
        yield connection


def _pipeline_of(session: AsyncSession) -> AbstractAsyncContextManager[Any]:
    """The session's driver connection in a pipeline: one that opens the transaction if it has
    not begun."""
    if not session.sync_session.in_transaction():
        return _opened(session)
    return _pipeline_on(session)


@asynccontextmanager
async def _pipeline_on(session: AsyncSession) -> AsyncIterator[Any]:
    connection = await driver_connection(session)
    async with connection.pipeline():
        yield connection


def _opening_driver_of(session: Session) -> Any:
    """(In SQLAlchemy's greenlet: the transaction's connection in autocommit mode, see `_opened`.)"""
    return session.connection(execution_options=_AUTOCOMMIT).connection.driver_connection


def _driver_of(session: Session) -> Any:
    """(In SQLAlchemy's greenlet: one hop for the connection and the driver's connection.)"""
    return session.connection().connection.driver_connection


async def _flush_pending(session: AsyncSession) -> None:
    """What the step added or changed through the ORM reaches the database first, in order."""
    if session.new or session.deleted or session.dirty:
        await session.flush()


async def _connection_and_plan(session: AsyncSession, prepared: Prepared) -> tuple[Any, _Compiled, Dialect]:
    committed = session.info.get(_COMMITTED)
    if committed is not None and committed is session.sync_session.get_transaction():
        raise RuntimeError("this transaction was committed by pipelined(commit=True)")
    await _flush_pending(session)
    connection = await driver_connection(session)
    bind = session.bind
    assert bind is not None
    return connection, prepared._for(bind.dialect), bind.dialect
