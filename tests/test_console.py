"""The console channel as a person uses it: a real `warmline` process, scripted and killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from storage.models import HealthReading, OutboxMessage, Visit
from tests.process import Proc

VOLUNTEER = "10000000001"
COORDINATOR = "10000000101"


def dialog_visits(db: Path) -> int:
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        n = session.scalar(select(func.count()).select_from(Visit).where(Visit.source == "dialog"))
    engine.dispose()
    return n or 0


def test_sigkill_mid_visit_resumes_at_the_same_question(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    first = Proc(["--db", str(db), "demo"])
    first.wait_for("1. 走访记录")
    for line, expect in [("1", "是哪一户"), ("1", "哪天"), ("今天", "怎么联系"), ("1", "节日")]:
        first.send(line)
        first.wait_for(expect)
    first.kill()  # SIGKILL between two messages
    assert dialog_visits(db) == 0

    second = Proc(["--db", str(db), "chat", "--as", VOLUNTEER])
    out = second.wait_for("节日")
    assert "林晓燕，你好" not in out  # straight back to the waiting question, not the menu
    for line in ["1", "1", "1", "无", "无", "2"]:
        second.send(line)
    second.wait_for("确认保存")
    assert "方式：入户走访" in second.output
    second.send("1")
    second.wait_for("已保存")
    assert second.close() == 0
    assert dialog_visits(db) == 1


def test_scripted_chat_prints_every_reply(tmp_path: Path) -> None:
    db = tmp_path / "script.db"
    Proc(["--db", str(db), "demo"]).close()  # seed the demo county
    script = "健康数据\n2\n１３５／８５　７２\n无\n保存\n"
    result = subprocess.run([sys.executable, "-m", "bot.cli", "--db", str(db), "chat", "--as", VOLUNTEER],
                            input=script, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    out = result.stdout
    assert "给哪位老人测的" not in out  # QX002 has one parent: asked no question about whom
    assert "血压 135/85 mmHg" in out and "脉搏：72" in out
    assert "健康数据已保存" in out
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        reading = session.scalar(select(HealthReading))
        assert reading is not None and (reading.systolic, reading.diastolic, reading.pulse) == (135, 85, 72)
    engine.dispose()


def test_danger_alert_reaches_the_coordinator_console(tmp_path: Path) -> None:
    db = tmp_path / "alert.db"
    Proc(["--db", str(db), "demo"]).close()
    script = "健康数据\n1\n1\n高压１９０低压１１５\n无\n保存\n"
    out = subprocess.run([sys.executable, "-m", "bot.cli", "--db", str(db), "chat", "--as", VOLUNTEER],
                         input=script, capture_output=True, text=True, timeout=60).stdout
    assert "已经通知协调员" in out and "120" in out
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        # (only the clear columns: the body is encrypted and this engine holds no key)
        alert = session.execute(select(OutboxMessage.channel, OutboxMessage.status)
                                .where(OutboxMessage.kind == "alert")).one()
        # the coordinator has never opened the bot: the alert waits, queued, for an address
        assert alert.channel == "none" and alert.status == "queued"
    engine.dispose()
    coordinator = subprocess.run([sys.executable, "-m", "bot.cli", "--db", str(db), "chat", "--as", COORDINATOR],
                                 input="", capture_output=True, text=True, timeout=60).stdout
    assert "【健康预警】QX001" in coordinator and "190/115" in coordinator
    with Session(engine) as session:
        alert = session.execute(select(OutboxMessage.address, OutboxMessage.status)
                                .where(OutboxMessage.kind == "alert")).one()
        assert alert.address == COORDINATOR and alert.status == "sent"
    engine.dispose()


def test_invite_then_register_in_the_console(tmp_path: Path) -> None:
    db = tmp_path / "invite.db"
    Proc(["--db", str(db), "demo"]).close()
    made = subprocess.run([sys.executable, "-m", "bot.cli", "--db", str(db), "invite", "--role", "volunteer",
                           "--township", "清溪镇"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0
    code = made.stdout.strip()
    assert len(code) == 9 and code[4] == "-"
    out = subprocess.run([sys.executable, "-m", "bot.cli", "--db", str(db), "chat", "--as", "newbie"],
                         input=f"{code}\n蒋一帆\n1\n", capture_output=True, text=True, timeout=60).stdout
    assert "注册好了" in out and "1. 走访记录" in out


def test_invite_for_an_unknown_township_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    made = subprocess.run([sys.executable, "-m", "bot.cli", "--db", str(db), "invite", "--role", "volunteer",
                           "--township", "不存在镇"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 2 and "unknown township" in made.stderr
