"""Sensitive text is unreadable in the database file without the key, and keys can be rotated."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, select, text

from bot.app import build_app
from bot.cli import main
from bot.config import ConfigError, load_settings
from bot.demo import seed_demo
from storage.models import DeceasedChild
from tests.chat import Chat


def raw(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(sql))]
    engine.dispose()
    return rows


async def test_free_text_is_encrypted_at_rest(volunteer: Chat, db_url: str) -> None:
    await volunteer.script("走访记录", "1", "今天", "1", "1", "1", "1")
    await volunteer.script("老人说想念儿子，晚上睡不好", "无", "2", "1")
    stored = raw(db_url, "SELECT needs FROM visits WHERE source = 'dialog'")
    assert stored and stored[0][0].startswith("enc2:") and "儿子" not in stored[0][0]
    children = raw(db_url, "SELECT name, death_cause, death_date FROM deceased_children LIMIT 1")
    assert children[0][0].startswith("enc2:") and children[0][1].startswith("enc2:")
    assert children[0][2] is not None  # dates stay queryable: the planner needs hard days
    with volunteer.app.db.session() as session:
        child = session.scalar(select(DeceasedChild).order_by(DeceasedChild.id))
        assert child is not None and child.name == "王小军"


async def test_a_readings_advice_is_encrypted_at_rest(volunteer: Chat, db_url: str) -> None:
    await volunteer.script("健康数据", "2", "128/83", "少吃咸的，按时服药", "保存")
    stored = raw(db_url, "SELECT advice FROM health_readings WHERE systolic = 128 AND diastolic = 83")
    assert len(stored) == 1 and stored[0][0].startswith("enc2:") and "服药" not in stored[0][0]


def test_a_sqlite_database_gets_a_private_key_file(tmp_path: Path) -> None:
    db = tmp_path / "county.db"
    settings = load_settings(db=str(db), env={})
    settings.keyring()
    key_file = tmp_path / "county.db.key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_shared_database_without_a_key_is_refused() -> None:
    settings = load_settings(db="postgresql://warmline@127.0.0.1/warmline", env={})
    with pytest.raises(ConfigError, match="WARMLINE_DATA_KEY"):
        settings.keyring()


def test_rotation_with_rekey(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "rotate.db"
    url = f"sqlite:///{db}"
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app = build_app(load_settings(db=str(db), env={"WARMLINE_DATA_KEY": old}))
    from bot.schema import ensure_schema

    ensure_schema(url)
    with app.db.session() as session:
        seed_demo(session, app.services.now())
    app.db.dispose()
    before = raw(url, "SELECT name FROM deceased_children ORDER BY id")

    monkeypatch.setenv("WARMLINE_DATA_KEY", f"{new},{old}")
    assert main(["--db", str(db), "rekey"]) == 0
    monkeypatch.delenv("WARMLINE_DATA_KEY")
    after = raw(url, "SELECT name FROM deceased_children ORDER BY id")
    assert before != after
    only_new = build_app(load_settings(db=str(db), env={"WARMLINE_DATA_KEY": new}))
    with only_new.db.session() as session:
        assert session.scalar(select(DeceasedChild.name).order_by(DeceasedChild.id)) == "王小军"
    only_new.db.dispose()
    only_old = build_app(load_settings(db=str(db), env={"WARMLINE_DATA_KEY": old}))
    with pytest.raises(Exception, match="cannot be decrypted"), only_old.db.session() as session:
        session.scalar(select(DeceasedChild.name).order_by(DeceasedChild.id))
    only_old.db.dispose()


def test_values_written_in_the_earlier_fernet_form_are_read_and_rekeyed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A county's database from before AES-GCM: its "enc1:" values open, and rekey rewrites them."""
    db = tmp_path / "older.db"
    url = f"sqlite:///{db}"
    key = Fernet.generate_key().decode()
    app = build_app(load_settings(db=str(db), env={"WARMLINE_DATA_KEY": key}))
    from bot.schema import ensure_schema

    ensure_schema(url)
    with app.db.session() as session:
        seed_demo(session, app.services.now())
    app.db.dispose()
    older = "enc1:" + Fernet(key.encode()).encrypt("李小红".encode()).decode()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE deceased_children SET name = :v WHERE id = (SELECT min(id) FROM deceased_children)"),
                     {"v": older})
    engine.dispose()
    with app.db.session() as session:
        assert session.scalar(select(DeceasedChild.name).order_by(DeceasedChild.id)) == "李小红"
    app.db.dispose()

    monkeypatch.setenv("WARMLINE_DATA_KEY", key)
    assert main(["--db", str(db), "rekey"]) == 0
    stored = raw(url, "SELECT name FROM deceased_children ORDER BY id")[0][0]
    assert stored.startswith("enc2:") and "李小红" not in stored
    with app.db.session() as session:
        assert session.scalar(select(DeceasedChild.name).order_by(DeceasedChild.id)) == "李小红"
    app.db.dispose()


def test_a_tampered_value_is_refused_not_misread() -> None:
    from storage.crypto import KeyError_, KeyRing

    ring = KeyRing([Fernet.generate_key().decode()])
    sealed = ring.encrypt("王小军")
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(KeyError_, match="cannot be decrypted"):
        ring.decrypt(flipped)
    with pytest.raises(KeyError_, match="cannot be decrypted"):
        KeyRing([Fernet.generate_key().decode()]).decrypt(sealed)  # another county's key
