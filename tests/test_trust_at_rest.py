"""No sensitive text at rest in clear: after realistic conversations, the raw database (the
SQLite file and its write-ahead log, byte for byte; every row of every table on PostgreSQL)
holds none of what the families and volunteers said; delivered bodies are purged after the
retention; `warmline rekey` re-encrypts outbox bodies and open conversations too."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from bot.app import App
from bot.care.scheduler import run_jobs
from bot.cli import main
from storage.db import sync_url
from storage.models import DialogSession, OutboxMessage, OutboxStatus
from tests.chat import Chat
from tests.conftest import FixedClock
from tests.scripted import typing_faster_than_people  # noqa: F401 - a fixture
from tests.test_export_erase import database_text
from tests.test_family_outreach import enrol

CHILD, CAUSE = "周晓雨", "白血病晚期"
WORDS = "我想聊聊，最近睡不好"
VISIT_NOTE = "老人说常梦见女儿，一个人在家偷偷哭"
SECRETS = (CHILD, CAUSE, WORDS, VISIT_NOTE)


def raw_bytes(db_url: str) -> bytes:
    """What someone who copies the database gets: the SQLite file and its WAL; on PostgreSQL
    the text of every row."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return database_text(db_url).encode()
    path = Path(str(url.database))
    conn = sqlite3.connect(path)  # move the WAL's pages into the file, as a backup would
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    conn.close()
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def found(blob: bytes, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    forms = {s: (s.encode(), json.dumps(s)[1:-1].encode()) for s in secrets}  # raw and \\u-escaped
    return [s for s, variants in forms.items() if any(v in blob for v in variants)]


async def intake_with_a_new_child(volunteer: Chat) -> None:
    """Up to the child's cause of death: the open conversation holds it."""
    await volunteer.script("建档", "1", "有误，重新填写", CHILD, "1985-03-02", "2012-08-15", CAUSE)


async def test_what_families_and_volunteers_said_is_nowhere_in_the_database_file(
        county: App, volunteer: Chat, db_url: str) -> None:
    await intake_with_a_new_child(volunteer)
    with county.db.session() as session:  # the answers really are in the open conversation
        row = session.scalar(select(DialogSession).where(DialogSession.address == volunteer.address))
        assert row is not None and CHILD in json.dumps(row.data, ensure_ascii=False)
    assert found(raw_bytes(db_url)) == []
    await volunteer.script("否", "无", *["无"] * 6, "无", "无", "无", "欢迎，按平常节奏")
    assert CHILD in volunteer.last["text"] and CAUSE in volunteer.last["text"]  # the summary shown
    await volunteer.say("保存")

    family = await enrol(county, "tg-sleepless", "李桂芳（母亲）", "确认", "1", "1", "1", "1", "2", "可以")
    assert "林晓燕" in await family.say(WORDS)

    await volunteer.script("走访记录", "QX001", "今天", "入户走访", "平常问候", "腿脚不便", "低落",
                           VISIT_NOTE, "无", "否", "保存")
    with county.db.session() as session:  # and went out through the outbox
        bodies = [json.dumps(p, ensure_ascii=False) for p in session.scalars(select(OutboxMessage.payload))]
    assert found("\n".join(bodies).encode()) == list(SECRETS)
    assert found(raw_bytes(db_url)) == []


async def test_delivered_bodies_are_purged_after_the_retention(county: App, volunteer: Chat,
                                                                clock: FixedClock, db_url: str) -> None:
    family = await enrol(county, "tg-purge", "李桂芳（母亲）", "确认", "1", "1", "1", "1", "2", "可以")
    await family.say(WORDS)
    with county.db.session() as session:
        forward = session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "family_message"))
        assert forward is not None and forward.status == OutboxStatus.QUEUED
        forward_id = forward.id
    clock.advance(days=30)
    await run_jobs(county, clock.now())
    with county.db.session() as session:  # not sent yet: a queued body is never purged
        assert session.get(OutboxMessage, forward_id).payload is not None  # type: ignore[union-attr]
    await county.runner.mark_sent([forward_id])
    clock.advance(days=6)
    await run_jobs(county, clock.now())
    with county.db.session() as session:  # sent 6 days ago: kept (default 7 days)
        assert session.get(OutboxMessage, forward_id).payload is not None  # type: ignore[union-attr]
    clock.advance(days=2)
    await run_jobs(county, clock.now())
    with county.db.session() as session:
        row = session.get(OutboxMessage, forward_id)
        assert row is not None and row.payload is None and row.status == OutboxStatus.SENT
        assert row.kind == "family_message" and row.sent_at is not None  # who/when/kind remain
        left = session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.status.in_([OutboxStatus.SENT, OutboxStatus.EXPIRED, OutboxStatus.FAILED]),
            OutboxMessage.payload.is_not(None)))
    assert left == 0  # every finished message of the month is blanked, replies included


def test_purge_bodies_command_applies_a_shorter_retention_at_once(county: App, db_url: str,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    now = county.services.now()
    monkeypatch.setenv("WARMLINE_NOW", now.isoformat())  # the command's clock is the test's
    with county.db.session() as session:
        session.add(OutboxMessage(idempotency_key="purge:sent", channel="console", address="a",
                                  kind="reply", payload={"text": WORDS}, status=OutboxStatus.SENT,
                                  created_at=now - timedelta(hours=3), sent_at=now - timedelta(hours=2)))
        session.add(OutboxMessage(idempotency_key="purge:queued", channel="console", address="a",
                                  kind="reply", payload={"text": VISIT_NOTE}, status=OutboxStatus.QUEUED,
                                  created_at=now - timedelta(hours=3)))
    assert main(["--db", db_url, "purge-bodies"]) == 0  # default 7 days: nothing that young
    assert "已清除 0 条" in capsys.readouterr().out
    assert main(["--db", db_url, "purge-bodies", "--days", "0"]) == 0
    assert "已清除 1 条" in capsys.readouterr().out
    with county.db.session() as session:
        rows = dict(session.execute(select(OutboxMessage.idempotency_key, OutboxMessage.payload)
                                    .where(OutboxMessage.idempotency_key.like("purge:%"))).all())
    assert rows == {"purge:sent": None, "purge:queued": {"text": VISIT_NOTE}}


async def test_rekey_covers_outbox_bodies_and_open_conversations(county: App, volunteer: Chat, db_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    from storage.crypto import KeyRing
    from tests.conftest import TEST_DATA_KEY

    await intake_with_a_new_child(volunteer)

    def stored() -> dict[str, str]:
        engine = create_engine(sync_url(db_url))
        with engine.connect() as conn:
            out = {f"outbox{i}": p for i, p in conn.execute(text("SELECT id, payload FROM outbox"))}
            out |= {f"session{i}": d for i, d in conn.execute(text("SELECT id, data FROM dialog_sessions"))}
        engine.dispose()
        return out

    before = stored()
    assert before and all(v.startswith("enc2:") for v in before.values())
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("WARMLINE_DATA_KEY", f"{new},{TEST_DATA_KEY}")
    assert main(["--db", db_url, "rekey"]) == 0
    after = stored()
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before)
    only_new = KeyRing([new])
    assert all(only_new.decrypt(v) for v in after.values())
