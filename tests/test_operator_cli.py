"""An operator's ordinary mistakes end in one clear line and a non-zero exit, never a traceback.

Every test runs the real `python3 -m bot.cli` process, as a county office worker would type it,
against a real SQLite file holding the fictional demo county.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_DATA_KEY
from tests.process import Proc

# These run real processes on SQLite files and matplotlib, never on the test database server:
# once, on the SQLite pass of the suite, is enough.
pytestmark = pytest.mark.skipif(bool(os.environ.get("WARMLINE_TEST_DATABASE_URL")),
                                reason="process checks independent of the database; run on the SQLite pass")


CHINESE = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    # the key every test's process has (conftest sets WARMLINE_DATA_KEY for each test)
    result = cli("--db", str(folder / "demo.db"), "demo", cwd=folder, stdin="",
                 env={"WARMLINE_DATA_KEY": TEST_DATA_KEY})
    assert result.returncode == 0, result.stderr
    return folder / "demo.db"


@pytest.fixture
def db(demo_db: Path, tmp_path: Path) -> Path:
    """A copy of the demo county (with its key file) for one test."""
    for source in demo_db.parent.iterdir():
        if source.name.startswith("demo.db"):
            shutil.copy(source, tmp_path / source.name)
    return tmp_path / "demo.db"


def cli(*args: str, cwd: Path | None = None, stdin: str | None = "", env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The failure was said in one line, in Chinese and English, with a non-zero exit code."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert CHINESE.search(line) and re.search(r"[A-Za-z]{3,} [a-z]{2,}", line), line
    for word in words:
        assert word in line, line
    return line


# ------------------------------------------------------------------ paths and files


def test_a_folder_or_a_non_database_as_db(tmp_path: Path) -> None:
    one_clear_line(cli("--db", str(tmp_path), "due"), "folder")
    text = tmp_path / "notes.db"
    text.write_text("家庭名单\n")
    one_clear_line(cli("--db", str(text), "due"), "not a Warmline database")


def test_a_damaged_database(db: Path) -> None:
    with db.open("r+b") as fh:  # keep the header, overwrite the pages after it
        fh.seek(4096)
        fh.write(b"\xff" * 16384)
    one_clear_line(cli("--db", str(db), "due"), "damaged")


def test_a_read_only_database(db: Path, tmp_path: Path) -> None:
    """A read-only file system (a bind mount); as root, file modes alone do not stop writes."""
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "--bind", str(db.parent), str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("this machine does not allow a bind mount to make a read-only folder")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], check=True, capture_output=True)
        one_clear_line(cli("--db", str(mount / db.name), "invite", "--role", "volunteer"), "read-only")
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_folder_or_a_binary_file_as_config(db: Path, tmp_path: Path) -> None:
    one_clear_line(cli("--db", str(db), "--config", str(tmp_path), "due"), "folder")
    binary = tmp_path / "county.toml"
    binary.write_bytes(bytes(range(256)))
    one_clear_line(cli("--db", str(db), "--config", str(binary), "due"), "not a text file")


def test_output_paths_that_cannot_be_written(db: Path, tmp_path: Path) -> None:
    one_clear_line(cli("--db", str(db), "report", "--period", "2026-Q3", "--format", "html", "--out", str(tmp_path)),
                   "folder")
    existing = tmp_path / "old.txt"
    existing.write_text("x")
    one_clear_line(cli("--db", str(db), "report", "--period", "2026-Q3", "--format", "csv", "--out", str(existing)),
                   "folder or a .zip")
    one_clear_line(cli("--db", str(db), "export", "family", "QX001", "--out", str(tmp_path)), "folder")
    one_clear_line(cli("--db", str(db), "invite", "--role", "family", "--household", "QX001", "--qr", str(tmp_path)),
                   "folder")
    one_clear_line(cli("import", "--template", "families", "-o", str(tmp_path)), "folder")


# ------------------------------------------------------------------ databases


def test_an_unreachable_postgresql_server() -> None:
    # without the postgres extra the line is about the missing driver (the test below)
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is the postgres extra")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = one_clear_line(cli("--db", f"postgresql://warmline:secret@127.0.0.1:{port}/warmline", "due",
                              env={"WARMLINE_DATA_KEY": "x" * 44}), "cannot reach the database server")
    assert "secret" not in line


def test_a_missing_database_driver(tmp_path: Path) -> None:
    one_clear_line(cli("--db", "mysql://warmline:secret@127.0.0.1/warmline", "due"), "missing database driver")
    # The PostgreSQL driver not installed (hidden from this process):
    hide = ("import runpy, sys; sys.modules['psycopg'] = None; sys.argv = ['warmline'] + sys.argv[1:];"
            "runpy.run_module('bot.cli', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", hide, "--db", "postgresql://w@127.0.0.1/w", "due"],
                            capture_output=True, text=True, env={**os.environ, "WARMLINE_DATA_KEY": "x" * 44})
    one_clear_line(result, "warmline[postgres]")


def test_an_unknown_downgrade_revision(db: Path) -> None:
    one_clear_line(cli("--db", str(db), "db", "downgrade", "xyz"), "unknown schema revision")


# ------------------------------------------------------------------ the service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_bad_or_busy_port(db: Path) -> None:
    one_clear_line(cli("--db", str(db), "run", env={"WARMLINE_HTTP_PORT": "abc"}), "WARMLINE_HTTP_PORT")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_clear_line(cli("--db", str(db), "run", env={"WARMLINE_HTTP_PORT": str(port)}), "already in use")


def test_run_without_a_channel_says_what_to_set_and_where_it_listens(db: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMLINE_TELEGRAM", "WARMLINE_WECHAT",
                                                                     "WARMLINE_WECOM"))}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--no-scheduler", "--db", str(db)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**env, "WARMLINE_HTTP_PORT": str(port)})
    try:
        assert proc.stderr is not None
        seen = ""
        deadline = time.monotonic() + 60
        while "Warmline is running" not in seen and time.monotonic() < deadline:
            seen += proc.stderr.readline()
        assert "WARMLINE_TELEGRAM_TOKEN" in seen and "WARMLINE_WECHAT_APPID" in seen and "WARMLINE_WECOM_CORP_ID" in seen
        assert f"http://127.0.0.1:{port}" in seen
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0


# ------------------------------------------------------------------ command-line habits


def test_outbox_json_into_head_is_not_a_traceback(db: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--db", str(db), "outbox", "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader went away before anything was written, as `| head` does
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode != 0 and err == "", err


def test_global_options_after_the_command(db: Path, tmp_path: Path) -> None:
    result = cli("chat", "--as", "10000000001", "--db", str(db), cwd=tmp_path, stdin="/quit\n")
    assert result.returncode == 0, result.stderr
    assert "林晓燕" in result.stdout  # the demo county's volunteer, so the given database was used
    assert not (tmp_path / "warmline.db").exists()
    bad = tmp_path / "county.toml"
    bad.write_text("[health]\nsystolic_hihg = 170\n", encoding="utf-8")
    one_clear_line(cli("calendar", "--year", "2026", "--config", str(bad)), "systolic_high")


def test_ctrl_c_ends_the_chat_at_once_and_keeps_the_draft(db: Path) -> None:
    chat = Proc(["chat", "--as", "10000000001", "--db", str(db)])
    chat.wait_for("请选择要做的事", timeout=60)
    chat.send("1")  # 走访记录
    chat.wait_for("是哪一户")
    chat.send("1")  # QX001
    chat.wait_for("这次走访是哪天")
    started = time.monotonic()
    chat.proc.send_signal(signal.SIGINT)
    chat.proc.wait(timeout=10)
    assert time.monotonic() - started < 5 and chat.proc.returncode == 130
    chat.wait_for("kept for next time", timeout=5)
    again = cli("chat", "--as", "10000000001", "--db", str(db), stdin="")
    assert "这次走访是哪天" in again.stdout  # the visit resumes at the question it was on


def test_at_yesterday_is_explained(db: Path) -> None:
    line = one_clear_line(cli("--db", str(db), "due", "--at", "yesterday"), "--at", "2026-12-01T09:00")
    assert "配置" not in line and "configuration" not in line
    one_clear_line(cli("--db", str(db), "schedule", "--at", "yesterday"), "--at")


@pytest.mark.parametrize("days", ["-3", "0"])
def test_invite_refuses_a_ttl_that_is_not_in_the_future(db: Path, days: str) -> None:
    one_clear_line(cli("--db", str(db), "invite", "--role", "volunteer", "--ttl-days", days), "--ttl-days")


def test_demo_greets_the_person_you_chose(db: Path, tmp_path: Path) -> None:
    result = cli("demo", "--db", str(db), "--as", "10000000101", stdin="/quit\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "你是协调员郑丽华（10000000101）" in result.stdout and "林晓燕" not in result.stdout.split("\n")[1]


def test_schedule_prints_a_readable_summary(db: Path) -> None:
    result = cli("--db", str(db), "schedule", "--at", "2026-12-01T09:00")
    assert result.returncode == 0, result.stderr
    assert "每日提醒 / reminders" in result.stdout and "节日问候 / greetings" in result.stdout
    assert "{" not in result.stdout and "'" not in result.stdout
