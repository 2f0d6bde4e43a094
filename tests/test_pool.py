"""A service opens its step connections before the first message: after a restart a county's
volunteers (and everyone who wrote while it was down) arrive at once, and that burst should not
also pay for opening a PostgreSQL connection per concurrent step."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bot.app import App
from storage.db import Database, is_sqlite


async def test_the_pool_opens_one_connection_per_concurrent_step_before_the_first_message(app: App) -> None:
    db = Database(app.db.url, app.db.keyring, concurrent_steps=6)
    try:
        opened = await db.open_pool()
        if is_sqlite(db.url):
            assert opened == 0  # a SQLite connection costs nothing to open
            return
        assert opened == 6
        pool = db.async_engine.sync_engine.pool
        assert pool.checkedin() == 6, "the connections stay open in the pool"  # type: ignore[attr-defined]
        async with db.async_engine.connect() as conn:
            backends = await conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = '' AND backend_type = 'client backend'"))
        assert backends is not None and backends >= 6
    finally:
        await db.adispose()


async def test_a_database_that_cannot_be_reached_at_start_is_not_an_error() -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is the postgres extra")
    db = Database("postgresql://warmline@127.0.0.1:9/nowhere", concurrent_steps=2)
    try:
        assert await db.open_pool() == 0
    finally:
        await db.adispose()


async def test_a_server_that_does_not_answer_does_not_hold_the_start_up() -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is the postgres extra")
    import socket
    import time

    silent = socket.socket()  # accepts connections into its backlog and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    db = Database(f"postgresql://warmline@127.0.0.1:{silent.getsockname()[1]}/nowhere", concurrent_steps=2)
    try:
        started = time.monotonic()
        assert await db.open_pool(within=0.5) == 0
        assert time.monotonic() - started < 3
    finally:
        await db.adispose()
        silent.close()
