"""The hot path's prepared statements keep every rule the ORM keeps: encrypted columns, UTC
datetimes, Python-side defaults, the step's own transaction, and SQLAlchemy's errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from bot.app import App
from storage.base import table_of
from storage.models import DialogSession, ProcessedInbound
from storage.prepared import Prepared, pipelined

SESSIONS = table_of(DialogSession)
WRITE = Prepared(insert(SESSIONS).returning(SESSIONS.c.id, SESSIONS.c.updated_at),
                 keys=("channel", "address", "state", "data", "expires_at"))
READ = Prepared(select(SESSIONS.c.data, SESSIONS.c.expires_at, SESSIONS.c.version)
                .where(SESSIONS.c.id == bindparam("row_id")), keys=("row_id",))
BUMP = Prepared(update(SESSIONS).where(SESSIONS.c.id == bindparam("row_id"))
                .values(version=SESSIONS.c.version + 1), keys=("row_id",))
CLAIM = Prepared(insert(table_of(ProcessedInbound)), keys=("channel", "inbound_key", "processed_at"))


async def test_values_go_in_and_come_out_as_the_orm_writes_and_reads_them(app: App) -> None:
    """A volunteer's answers are encrypted at rest and read back as they were; datetimes come
    back in UTC; a column left out gets its Python-side default (version 0, updated_at now)."""
    later = datetime(2026, 12, 1, 8, 30, tzinfo=UTC) + timedelta(hours=1)
    answers = {"血压": "135/85", "走访": ["王阿姨", 2]}
    async with app.db.async_session() as session:
        [(row_id, updated_at)] = await WRITE.rows(session, {
            "channel": "console", "address": "vol-1", "state": "ask", "data": answers,
            "expires_at": later})
        assert updated_at is not None and updated_at.tzinfo is not None
        assert await BUMP.run(session, {"row_id": row_id}) == 1
    async with app.db.async_session() as session:
        assert await READ.first(session, {"row_id": row_id}) == (answers, later, 1)
        stored = await session.scalar(text("SELECT data FROM dialog_sessions WHERE id = :i"), {"i": row_id})
        assert "135/85" not in stored and "王阿姨" not in stored  # sealed at rest
        row = await session.get(DialogSession, row_id)
        assert row is not None and (row.data, row.expires_at, row.version) == (answers, later, 1)


async def test_it_runs_in_the_steps_own_transaction(app: App) -> None:
    """What a failed step wrote through a prepared statement is rolled back with the rest."""
    with pytest.raises(RuntimeError):
        async with app.db.async_session() as session:
            await CLAIM.run(session, {"channel": "console", "inbound_key": "m-1",
                                      "processed_at": datetime.now(UTC)})
            raise RuntimeError("the step failed after its first write")
    async with app.db.async_session() as session:
        assert await session.get(ProcessedInbound, ("console", "m-1")) is None


async def test_a_duplicate_is_sqlalchemys_integrity_error_and_many_rows_go_in_one_call(app: App) -> None:
    now = datetime.now(UTC)
    async with app.db.async_session() as session:
        await CLAIM.run_many(session, [{"channel": "console", "inbound_key": f"k{n}", "processed_at": now}
                                       for n in range(3)])
    with pytest.raises(IntegrityError):
        async with app.db.async_session() as session:
            await CLAIM.run(session, {"channel": "console", "inbound_key": "k1", "processed_at": now})
    async with app.db.async_session() as session:
        keys = await session.scalars(select(ProcessedInbound.inbound_key).where(
            ProcessedInbound.channel == "console").order_by(ProcessedInbound.inbound_key))
        assert list(keys) == ["k0", "k1", "k2"]


async def test_objects_the_step_added_reach_the_database_before_a_prepared_statement(app: App) -> None:
    """A row added through the ORM earlier in the step is written first (statement order)."""
    async with app.db.async_session() as session:
        session.add(DialogSession(channel="console", address="vol-2", data={}))
        [(row_id, _at)] = await WRITE.rows(session, {"channel": "console", "address": "vol-3", "state": None,
                                                     "data": {}, "expires_at": None})
        first = await session.scalar(select(DialogSession.id).where(DialogSession.address == "vol-2"))
        assert first is not None and first < row_id


async def test_two_databases_with_their_own_keys_each_read_their_own_answers(tmp_path: Path) -> None:
    """A prepared statement serves every database of the process with that database's own
    data key (its plan is kept per engine, not per kind of database)."""
    from cryptography.fernet import Fernet

    from benchmarks.common import fresh_sqlite
    from storage.crypto import KeyRing
    from storage.db import Database

    for name in ("county-a", "county-b"):
        db = Database(fresh_sqlite(tmp_path / f"{name}.db"), keyring=KeyRing([Fernet.generate_key().decode()]))
        async with db.async_session() as session:
            [(row_id, _at)] = await WRITE.rows(session, {"channel": "console", "address": name, "state": None,
                                                         "data": {"村": name}, "expires_at": None})
        async with db.async_session() as session:
            assert await READ.first(session, {"row_id": row_id}) == ({"村": name}, None, 0)
            row = await session.get(DialogSession, row_id)
            assert row is not None and row.data == {"村": name}  # the ORM reads what Prepared wrote
        await db.adispose()


async def test_a_pipelined_block_that_commits_keeps_the_step_whole(app: App) -> None:
    """`pipelined(commit=True)` (the step's writes and its COMMIT together on PostgreSQL): what
    the block wrote is committed and its RETURNING rows are read after it; a duplicate inside it
    fails the whole step as before; nothing can slip in after its COMMIT."""
    from storage.models import Person

    now = datetime.now(UTC)
    async with app.db.async_session() as session:
        async with pipelined(session, commit=True):
            await CLAIM.run(session, {"channel": "console", "inbound_key": "m-1", "processed_at": now})
            pending = await WRITE.send(session, {"channel": "console", "address": "vol-1", "state": "ask",
                                                 "data": {"血压": "135/85"}, "expires_at": None})
        [(row_id, updated_at)] = await pending.rows()
        assert updated_at is not None
        if app.db.async_engine.dialect.name == "postgresql":  # committed there: nothing may follow
            with pytest.raises(RuntimeError, match="committed"):
                await READ.first(session, {"row_id": row_id})
    async with app.db.async_session() as session:
        assert await READ.first(session, {"row_id": row_id}) == ({"血压": "135/85"}, None, 0)

    with pytest.raises(IntegrityError):  # the same message again: nothing of the second step stays
        async with app.db.async_session() as session, pipelined(session, commit=True):
            await WRITE.send(session, {"channel": "console", "address": "vol-2", "state": "ask",
                                       "data": {}, "expires_at": None})
            await CLAIM.run(session, {"channel": "console", "inbound_key": "m-1", "processed_at": now})
    async with app.db.async_session() as session:
        assert await session.scalar(select(SESSIONS.c.id).where(SESSIONS.c.address == "vol-2")) is None

    if app.db.async_engine.dialect.name == "postgresql":  # an ORM change would miss the COMMIT
        with pytest.raises(RuntimeError, match="ORM"):
            async with app.db.async_session() as session, pipelined(session, commit=True):
                await CLAIM.run(session, {"channel": "console", "inbound_key": "m-2", "processed_at": now})
                session.add(Person(name="赵志愿", role="volunteer", phone="13800000099"))
        async with app.db.async_session() as session:
            assert await session.get(ProcessedInbound, ("console", "m-2")) is None
            assert await session.scalar(select(Person.id).where(Person.phone == "13800000099")) is None


async def test_a_transaction_opened_by_its_first_read_holds_to_its_end(app: App) -> None:
    """`Prepared.opening` (on PostgreSQL the step's BEGIN goes with its first read): the row it
    locks stays locked until the step ends, a step that fails after it leaves nothing behind,
    and the connection it used is transactional again for whoever uses it next."""
    from storage.db import Database
    from storage.prepared import driver_connection

    locked = Prepared(select(SESSIONS.c.version).where(SESSIONS.c.id == bindparam("row_id")).with_for_update(),
                      keys=("row_id",))
    now = datetime.now(UTC)
    async with app.db.async_session() as session:
        [(row_id, _)] = await WRITE.rows(session, {"channel": "console", "address": "vol-1", "state": "ask",
                                                   "data": {}, "expires_at": None})
    postgres = app.db.async_engine.dialect.name == "postgresql"
    other = Database(app.db.url, app.db.keyring)
    try:
        with pytest.raises(RuntimeError):
            async with app.db.async_session() as session:
                assert await locked.opening(session, {"row_id": row_id}) == [(0,)]
                await BUMP.run(session, {"row_id": row_id})
                await CLAIM.run(session, {"channel": "console", "inbound_key": "m-1", "processed_at": now})
                if postgres:  # another worker cannot take this chat's row meanwhile
                    async with other.async_session() as intruder:
                        with pytest.raises(Exception, match="could not obtain lock"):
                            await intruder.execute(text(
                                "SELECT version FROM dialog_sessions WHERE id = :i FOR UPDATE NOWAIT"), {"i": row_id})
                raise RuntimeError("the step failed after its first read")
        async with app.db.async_session() as session:
            assert await READ.first(session, {"row_id": row_id}) == ({}, None, 0)
            assert await session.get(ProcessedInbound, ("console", "m-1")) is None
            if postgres:
                assert (await driver_connection(session)).autocommit is False
        with pytest.raises(RuntimeError):  # the pool's connection again: a plain unit of work
            async with app.db.async_session() as session:
                await BUMP.run(session, {"row_id": row_id})
                await CLAIM.run(session, {"channel": "console", "inbound_key": "m-2", "processed_at": now})
                raise RuntimeError("failed after two writes")
        async with app.db.async_session() as session:
            assert await locked.opening(session, {"row_id": row_id}) == [(0,)]
            await BUMP.run(session, {"row_id": row_id})
        async with app.db.async_session() as session:
            assert await READ.first(session, {"row_id": row_id}) == ({}, None, 1)
            assert await session.get(ProcessedInbound, ("console", "m-2")) is None
    finally:
        await other.adispose()
