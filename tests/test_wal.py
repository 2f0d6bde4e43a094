"""SQLite: the running bot's write-ahead log reaches the database file from a thread of its own."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from storage.base import table_of
from storage.db import Database, sqlite_file
from storage.models import ProcessedInbound


async def test_steps_commit_without_checkpointing_and_the_log_still_reaches_the_file(
        db_url: str) -> None:
    """The bot's connections leave checkpoints to the background thread (none inside a step's
    commit), yet what they write is copied into the database file within moments, and the
    thread ends with the database."""
    file = sqlite_file(db_url)
    if file is None:
        pytest.skip("SQLite's write-ahead log")
    db = Database(db_url)
    async with db.async_session() as session:
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        [(autocheckpoint,)] = await (await raw.execute("PRAGMA wal_autocheckpoint")).fetchall()
    assert autocheckpoint == 0
    before = Path(file).stat().st_size
    rows = [{"channel": "console", "inbound_key": f"{n:04d}-" + "x" * 100, "processed_at": datetime.now(UTC)}
            for n in range(20_000)]  # about 3 MB, several thousand pages of log
    async with db.async_session() as session:
        await session.execute(insert(table_of(ProcessedInbound)), rows)
    for _ in range(50):
        if Path(file).stat().st_size > before + 2_000_000:
            break
        await asyncio.sleep(0.1)
    assert Path(file).stat().st_size > before + 2_000_000, "the log was not copied back"
    with sqlite3.connect(file) as check:
        assert check.execute("SELECT count(*) FROM processed_inbound").fetchone()[0] >= 20_000
    checkpoints = db.checkpoints
    assert checkpoints is not None and checkpoints.running
    await db.adispose()
    assert not checkpoints.running
