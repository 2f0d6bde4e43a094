"""The file leaves only on purpose: `warmline export family` writes all of it, `warmline erase
family` removes the personal data and keeps the anonymous counts reports need."""

from __future__ import annotations

import io
import json
import sqlite3
import stat
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from bot.cli import main
from storage.db import sync_url
from storage.models import (
    Assessment,
    AuditEntry,
    CaseFile,
    DeceasedChild,
    HealthReading,
    Household,
    HouseholdMember,
    Person,
    Visit,
)
from tests.chat import Chat
from tests.conftest import TEST_DATA_KEY
from tests.scripted import typing_faster_than_people  # noqa: F401 - a fixture


def database_text(db_url: str) -> str:
    """Everything the database holds, as text: SQLite's dump, or every row of every table on
    PostgreSQL (cast to its text form)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return "\n".join(sqlite3.connect(str(url.database)).iterdump())
    engine = create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            tables = list(conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")))
            return "\n".join(str(row) for table in tables
                             for row in conn.scalars(text(f'SELECT CAST(t AS text) FROM "{table}" t')))
    finally:
        engine.dispose()

NAMES = ("王德福", "李桂芳", "王小军")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)
    monkeypatch.delenv("WARMLINE_CONFIG", raising=False)


def warmline(db_url: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["--db", db_url, *args])
    return code, out.getvalue(), err.getvalue()


async def fill_the_file(volunteer: Chat) -> None:
    """A little of everything for QX001: intake, a visit with a need, a reading, an assessment, a service."""
    await volunteer.script("建档", "QX001", "1", "靠低保", "下一项", *["无"] * 6, "看病难", "下一项",
                           "想要助行器", "下一项", "无", "欢迎，按平常节奏", "保存")
    await volunteer.script("走访记录", "QX001", "今天", "入户走访", "平常问候", "腿脚不便", "低落",
                           "想要助行器", "200 水果", "是", "保存")
    await volunteer.script("健康数据", "QX001", "王德福", "150/95", "少吃盐", "保存")
    await volunteer.script("评估", "QX001", "王德福", "4", "2", "3", "3", "夜里睡不好", "无", "保存")
    await volunteer.script("服务", "QX001", "王德福", "意外伤害保险", "在享受/有效", "跳过", "2027-03-01",
                           "保存", "完成")


async def test_export_writes_the_whole_file_as_json_and_a_workbook(
        volunteer: Chat, db_url: str, tmp_path: Path, cli_env: None) -> None:
    await fill_the_file(volunteer)
    out = tmp_path / "qx001.json"
    code, _stdout, err = warmline(db_url, "export", "family", "QX001", "--format", "json", "--out", str(out))
    assert code == 0 and "已导出" in err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # only its owner can read it
    data = json.loads(out.read_text())
    assert data["household"]["code"] == "QX001" and data["household"]["village"] == "桃园村"
    assert {m["name"] for m in data["members"]} == {"王德福", "李桂芳"}
    assert data["deceased_children"][0]["name"] == "王小军"
    assert data["case_file"]["economic_security"] == "靠低保"
    assert set(data["case_file"]["member_notes"]) == {"王德福", "李桂芳"}
    assert data["visits"][-1]["needs"] == "想要助行器" and data["visits"][-1]["money_fen"] == 20000
    assert data["health_readings"][0]["systolic"] == 150 and data["health_readings"][0]["advice"] == "少吃盐"
    assert data["assessments"][0]["grief_trauma"] == 4 and data["assessments"][0]["member"] == "王德福"
    assert data["services"][0]["expires_on"] == "2027-03-01"
    assert {f["text"] for f in data["follow_ups"]} == {"想要助行器"}

    book_path = tmp_path / "qx001.xlsx"
    code, _stdout, _err = warmline(db_url, "export", "family", "QX001", "--format", "xlsx", "--out", str(book_path))
    assert code == 0
    book = load_workbook(book_path)
    assert {"家庭", "成员", "子女", "档案", "评估", "服务与保障", "走访", "健康数据", "跟进事项"} <= set(book.sheetnames)
    names = [row[book["成员"][1].index(next(c for c in book["成员"][1] if c.value == "name"))].value
             for row in book["成员"].iter_rows(min_row=2)]
    assert sorted(names) == ["李桂芳", "王德福"]
    with volunteer.app.db.session() as session:
        exports = session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "export"))
        assert exports == 2

    code, _stdout, err = warmline(db_url, "export", "family", "NOPE01")
    assert code == 2 and "unknown household" in err


async def test_erase_removes_personal_data_and_keeps_the_counts(
        volunteer: Chat, db_url: str, tmp_path: Path, cli_env: None) -> None:
    await fill_the_file(volunteer)
    with volunteer.app.db.session() as session:
        visits_before = session.scalar(select(func.count()).select_from(Visit)
                                       .join(Household).where(Household.code == "QX001"))

    code, stdout, err = warmline(db_url, "erase", "family", "QX001")  # no --yes, no terminal
    assert code == 2 and "将删除" in stdout and "--yes" in err
    with volunteer.app.db.session() as session:  # the preview changed nothing
        assert session.scalar(select(Household).where(Household.code == "QX001")) is not None

    code, stdout, _err = warmline(db_url, "erase", "family", "QX001", "--yes")
    assert code == 0
    assert "已删除 QX001" in stdout and "孩子的信息 / the children's details: 1" in stdout
    assert "成员的姓名、电话、生日 / members' names, phones, birthdays: 2" in stdout
    assert "保留" in stdout

    with volunteer.app.db.session() as session:
        household = session.scalar(select(Household).where(Household.erased_at.is_not(None)))
        assert household is not None and household.code != "QX001" and household.village_id is None
        hid = household.id
        people = session.scalars(select(Person).join(HouseholdMember).where(HouseholdMember.household_id == hid))
        assert {(p.name, p.phone, p.active) for p in people} == {("（已删除）", None, False)}
        assert session.scalar(select(func.count()).select_from(DeceasedChild).where(DeceasedChild.household_id == hid)) == 0
        assert session.scalar(select(CaseFile).where(CaseFile.household_id == hid)) is None
        visits = list(session.scalars(select(Visit).where(Visit.household_id == hid)))
        assert len(visits) == visits_before  # the counts stay …
        dialog_visit = next(v for v in visits if v.source == "dialog")
        assert dialog_visit.money_fen == 20000 and dialog_visit.kind == "home"  # … with dates, kinds, money
        assert (dialog_visit.needs, dialog_visit.mood, dialog_visit.gifts, dialog_visit.physical_state) == (None,) * 4
        reading = session.scalar(select(HealthReading).where(HealthReading.household_id == hid))
        assert reading is not None and reading.systolic == 150 and reading.advice is None
        assessment = session.scalar(select(Assessment).where(Assessment.household_id == hid))
        assert assessment is not None and assessment.grief_trauma == 4 and assessment.current_problems is None
        assert session.scalar(select(AuditEntry).where(AuditEntry.action == "erase")) is not None

    # not one name is left anywhere in the database file, in any form
    dump = database_text(db_url)
    for name in NAMES:
        assert name not in dump and json.dumps(name)[1:-1] not in dump

    assert "QX001" not in await volunteer.say("/family")  # gone from every scope
    code, _stdout, err = warmline(db_url, "export", "family", "QX001")
    assert code == 2
    assert "QX002" in await volunteer.say("/family")  # the neighbours are untouched
