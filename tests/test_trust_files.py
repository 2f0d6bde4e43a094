"""The database and key files are private, and a database without its key is never given a new one."""

from __future__ import annotations

import io
import sqlite3
import stat
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from bot.app import App, build_app
from bot.cli import main
from bot.config import load_settings
from bot.demo import seed_demo
from bot.schema import ensure_schema
from tests.conftest import TEST_DATA_KEY


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def warmline(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WARMLINE_DATA_KEY", "WARMLINE_DATA_KEY_FILE", "WARMLINE_CONFIG", "WARMLINE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_a_new_database_and_its_key_are_readable_by_their_owner_only(tmp_path: Path, no_key_env: None) -> None:
    db = tmp_path / "county" / "warmline.db"
    assert warmline("--db", str(db), "db", "upgrade")[0] == 0
    assert mode(db) == 0o600
    assert warmline("--db", str(db), "outbox")[0] == 0  # opens the app: the key file is made
    assert mode(db.with_name("warmline.db.key")) == 0o600
    conn = sqlite3.connect(db)  # while a connection writes, SQLite's side files exist
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE scratch (x)")
    conn.commit()
    assert mode(db.with_name("warmline.db-wal")) == 0o600
    assert mode(db.with_name("warmline.db-shm")) == 0o600
    conn.close()


def _county_with_encrypted_rows(db: Path) -> Path:
    settings = load_settings(db=str(db), env={})
    ensure_schema(settings.database_url)
    app = build_app(settings)
    with app.db.session() as session:
        seed_demo(session, app.services.now())  # deceased children: encrypted names
    app.db.dispose()
    key = db.with_name(db.name + ".key")
    assert key.exists()
    return key


def test_a_database_copied_without_its_key_file_stops_with_a_clear_message(tmp_path: Path,
                                                                           no_key_env: None) -> None:
    db = tmp_path / "warmline.db"
    key = _county_with_encrypted_rows(db)
    kept = key.read_text()
    key.unlink()
    code, err = warmline("--db", str(db), "outbox")
    assert code == 2
    assert "key file" in err and "missing" in err and "密钥文件" in err
    assert not key.exists()  # no new key was minted
    key.write_text(kept)  # with the key restored, everything opens again
    assert warmline("--db", str(db), "outbox")[0] == 0


async def test_a_missing_named_key_file_is_not_recreated_either(county: App, tmp_path: Path, no_key_env: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on either database: WARMLINE_DATA_KEY_FILE naming a file that is not there."""
    url = county.settings.database_url
    monkeypatch.setenv("WARMLINE_DATA_KEY_FILE", str(tmp_path / "typo.key"))
    code, err = warmline("--db", url, "outbox")
    assert code == 2 and "typo.key" in err and not (tmp_path / "typo.key").exists()
    (tmp_path / "restored.key").write_text(TEST_DATA_KEY + "\n")
    monkeypatch.setenv("WARMLINE_DATA_KEY_FILE", str(tmp_path / "restored.key"))
    assert warmline("--db", url, "outbox")[0] == 0
