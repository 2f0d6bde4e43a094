"""Importing the county's lists: templates, round trips, re-imports that update, and bad rows."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from bot.app import App
from bot.care.birthdays import Birthday, LunarBirthday, lunar_birthday_in
from bot.cli import main
from bot.imports import FAMILY_COLUMNS, PhoneError, normalise_phone
from storage.models import (
    ContactAssignment,
    County,
    DeceasedChild,
    Household,
    HouseholdMember,
    Person,
    Role,
    Township,
)
from tests.conftest import TEST_DATA_KEY

HEADERS = list(FAMILY_COLUMNS.values())


@pytest.fixture(autouse=True)
def _data_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI commands read the data key from the environment, as in production."""
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)


def count(app: App, model: type) -> int:
    with app.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def run(app: App, *argv: str) -> int:
    return main(["--db", app.settings.database_url, *argv])


def family_rows() -> list[list[object]]:
    """Two fictional households; phone numbers start with 100 and reach nobody."""
    return [
        # 户编号 乡镇 村 姓名 关系 性别 出生日期 生日历法 农历生日 电话 困难家庭 联系志愿者 子女姓名 子女出生 子女去世 原因
        ["QX101", "清溪镇", "桃园村", "孟德厚", "父亲", "男", datetime(1951, 5, 20), "农历", "闰四月十五",
         10000005001, "是", "10000000001", "孟小兰", "1979-02-03", "2010-06-30", "疾病"],
        ["QX101", "清溪镇", "桃园村", "姜秀云", "母亲", "女", "1953/01/30", "公历", "", "", "是",
         "10000000001", "", "", "", ""],
        ["BY101", "白云乡", "新村", "宋大山", "father", "male", "19480312", "lunar", "L06-30",
         "", "否", "10000000003", "宋明", "1975-10-01", "2013-01-20", "意外"],
    ]


def write_xlsx(path: Path, rows: list[list[object]], headers: list[str] = HEADERS) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_template_then_import_then_reimport_updates(county: App, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    template = tmp_path / "families.xlsx"
    assert run(county, "import", "--template", "families", "-o", str(template)) == 0
    sheet = load_workbook(template).worksheets[0]
    assert [c.value for c in sheet[1]] == HEADERS
    write_xlsx(template, family_rows())
    households, members = count(county, Household), count(county, HouseholdMember)
    assert run(county, "import", "families", str(template)) == 0
    out = capsys.readouterr().out
    assert "households 2" in out and "members 3" in out and "villages 1" in out  # 新村 is new
    assert count(county, Household) == households + 2 and count(county, HouseholdMember) == members + 3
    with county.db.session() as session:
        father = session.execute(select(HouseholdMember, Person).join(Person).where(Person.name == "孟德厚")).one()
        member, person = father
        assert person.phone == "10000005001" and person.role == Role.FAMILY
        assert (member.birthday_calendar, member.lunar_birth_month, member.lunar_birth_day,
                member.lunar_birth_leap) == ("lunar", 4, 15, True)
        assert member.birth_date == date(1951, 5, 20) and member.relation == "father"
        song = session.execute(select(HouseholdMember).join(Person).where(Person.name == "宋大山")).scalar_one()
        assert (song.lunar_birth_month, song.lunar_birth_day, song.lunar_birth_leap) == (6, 30, True)
        qx101 = session.scalar(select(Household).where(Household.code == "QX101"))
        assert qx101 is not None and qx101.hardship
        child = session.scalar(select(DeceasedChild).where(DeceasedChild.household_id == qx101.id))
        assert child is not None and child.death_date == date(2010, 6, 30) and child.death_cause == "疾病"
        volunteer = session.scalar(select(ContactAssignment.volunteer_id).where(
            ContactAssignment.household_id == qx101.id, ContactAssignment.ended_on.is_(None)))
        assert volunteer == session.scalar(select(Person.id).where(Person.phone == "10000000001"))
    # The leap-month 30th birthday reaches the planner's rules: 2025 has a 29-day leap 6th month.
    assert lunar_birthday_in(LunarBirthday(6, 30, True), 2025) == date(2025, 8, 22)
    assert Birthday.of("lunar", None, 6, 30, True) is not None
    # Re-import with a change: updates, never duplicates; the contact volunteer is handed over.
    rows = family_rows()
    rows[2][10] = "是"
    rows[2][11] = "10000000004"
    write_xlsx(template, rows)
    assert run(county, "import", "families", str(template)) == 0
    out = capsys.readouterr().out
    assert "updated: households 1\n" in out  # only BY101 changed (hardship)
    assert "unchanged: children 2, households 1, members 3" in out
    assert "created: assignments 1\n" in out  # only the handed-over family got a new contact
    assert count(county, Household) == households + 2 and count(county, HouseholdMember) == members + 3
    with county.db.session() as session:
        by101 = session.scalar(select(Household).where(Household.code == "BY101"))
        assert by101 is not None and by101.hardship
        current = list(session.scalars(select(ContactAssignment).where(
            ContactAssignment.household_id == by101.id, ContactAssignment.ended_on.is_(None))))
        assert len(current) == 1
        assert session.get(Person, current[0].volunteer_id).phone == "10000000004"  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).select_from(DeceasedChild).where(
            DeceasedChild.household_id == by101.id)) == 1


def test_csv_with_english_keys_in_gbk(county: App, tmp_path: Path) -> None:
    path = tmp_path / "families.csv"
    path.write_bytes((
        "household,township,village,name,relation,sex,birth_date,hardship,contact_volunteer\n"
        "CL101,长乐镇,新塘村,柯满堂,father,男,1950-07-01,否,10000000004\n"
    ).encode("gb18030"))
    assert run(county, "import", "families", str(path)) == 0
    with county.db.session() as session:
        assert session.scalar(select(Household).where(Household.code == "CL101")) is not None


def test_bad_rows_are_reported_and_nothing_is_imported(county: App, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    rows = family_rows()
    rows[1][4] = "舅舅"  # row 3: unknown relation
    rows[2][6] = "1948-13-45"  # row 4: not a date
    rows[2][11] = "10000009999"  # row 4: no such volunteer
    rows.append(["QX102", "清溪镇", "", "", "母亲", "", "", "", "四月三十五", "", "", "", "", "", "", ""])
    before = (count(county, Household), count(county, Person), count(county, DeceasedChild))
    assert run(county, "import", "families", str(write_xlsx(tmp_path / "bad.xlsx", rows))) == 1
    err = capsys.readouterr().err
    assert "第 3 行" in err and "舅舅" in err
    assert "第 4 行" in err and "1948-13-45" in err and "10000009999" in err
    assert "第 5 行" in err and "姓名 不能为空" in err and "农历生日看不懂" in err
    assert "第 2 行" not in err and "nothing was imported" in err
    assert (count(county, Household), count(county, Person), count(county, DeceasedChild)) == before


def test_missing_columns_and_unknown_files_are_refused(county: App, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write_xlsx(tmp_path / "f.xlsx", [["X1", "清溪镇"]], headers=["户编号", "乡镇"])
    assert run(county, "import", "families", str(path)) == 1
    assert "姓名(name)" in capsys.readouterr().err
    other = tmp_path / "f.pdf"
    other.write_text("x")
    assert run(county, "import", "families", str(other)) == 1


def test_new_township_in_an_empty_database_needs_the_county(app: App, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    volunteers = tmp_path / "v.csv"
    volunteers.write_text("姓名,电话,乡镇,角色,技能\n"
                          "沈志远,10000007001,东湖镇,志愿者,心理疏导\n"
                          "曹红梅,10000007002,东湖镇,协调员,\n", encoding="utf-8")
    assert run(app, "import", "volunteers", str(volunteers)) == 1
    assert "--county" in capsys.readouterr().err
    assert count(app, Person) == 0
    assert run(app, "import", "volunteers", str(volunteers), "--county", "示例县", "--dry-run") == 0
    assert count(app, Person) == 0 and count(app, Township) == 0
    assert run(app, "import", "volunteers", str(volunteers), "--county", "示例县") == 0
    assert count(app, Person) == 2
    volunteers.write_text("name,phone,township,role,skills\n"
                          "沈志远,10000007001,东湖镇,coordinator,心理疏导 智能手机\n", encoding="utf-8")
    assert run(app, "import", "volunteers", str(volunteers)) == 0
    with app.db.session() as session:
        person = session.scalar(select(Person).where(Person.phone == "10000007001"))
        assert person is not None and person.role == Role.COORDINATOR and person.skills == "心理疏导 智能手机"
    assert count(app, Person) == 2


def test_volunteer_rows_are_checked(county: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v.csv"
    path.write_text("姓名,电话,乡镇,角色\n"
                    "甲,10000007101,清溪镇,队长\n"
                    ",abc,清溪镇,志愿者\n"
                    "乙,10000007101,清溪镇,志愿者\n", encoding="utf-8")
    before = count(county, Person)
    assert run(county, "import", "volunteers", str(path)) == 1
    err = capsys.readouterr().err
    assert "第 2 行" in err and "队长" in err
    assert "第 3 行" in err and "姓名 不能为空" in err and "abc" in err
    assert "第 4 行" in err and "重复" in err
    assert count(county, Person) == before


# ------------------------------------------------------------------ messy county spreadsheets


def cli(app: App, *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """The real `warmline` process, on the test's database."""
    return subprocess.run([sys.executable, "-m", "bot.cli", "--db", app.settings.database_url, *argv],
                          capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "WARMLINE_DATA_KEY": TEST_DATA_KEY, **(env or {})})


@pytest.mark.parametrize("written", ["138 0000 2212", "138-0000-2212", "+86 138 0000 2212", "0086 13800002212",
                                     "8613800002212", "13800002212.0", "1.3800002212E+10", "１３８００００２２１２",
                                     "(138)0000-2212"])
def test_phone_numbers_are_normalised(written: str) -> None:
    assert normalise_phone(written) == "13800002212"


def test_a_phone_number_that_excel_rounded_is_refused_not_guessed() -> None:
    with pytest.raises(PhoneError, match="scientific notation"):
        normalise_phone("1.38E+10")
    with pytest.raises(PhoneError, match="bad phone number"):
        normalise_phone("138-abc")


def test_messy_phones_and_a_title_row_import(county: App, tmp_path: Path) -> None:
    path = tmp_path / "families.xlsx"
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["青山县失独家庭名册（2026年12月）"])
    sheet.append(["填表人：县计生协"])
    sheet.append(["户编号", "乡镇", "姓名", "关系", "电话", "联系志愿者", "纳入日期"])
    sheet.append(["QX301", "清溪镇", "韦长青", "父亲", "138 0000 2212", "100-0000-0001", "2026-10-08"])
    sheet.append(["QX301", "清溪镇", "韦秋菊", "母亲", 13800002221.0, "+86 100 0000 0001", ""])
    sheet.append(["QX302", "清溪镇", "韦大河", "父亲", "1.38E+10", "", ""])
    book.save(path)
    result = cli(county, "import", "families", str(path))
    assert result.returncode == 1
    assert "第 6 行" in result.stderr and "scientific notation" in result.stderr  # row numbers as the sheet shows
    assert "第 4 行" not in result.stderr and "第 5 行" not in result.stderr
    sheet.delete_rows(6)
    book.save(path)
    result = cli(county, "import", "families", str(path))
    assert result.returncode == 0, result.stderr
    with county.db.session() as session:
        phones = dict(session.execute(select(Person.name, Person.phone).where(Person.name.in_(("韦长青", "韦秋菊")))).all())
        household = session.scalar(select(Household).where(Household.code == "QX301"))
        assert household is not None and household.enrolled_on == date(2026, 10, 8)
        volunteer = session.scalar(select(Person.phone).join(
            ContactAssignment, ContactAssignment.volunteer_id == Person.id).where(
            ContactAssignment.household_id == household.id))
    assert phones == {"韦长青": "13800002212", "韦秋菊": "13800002221"}
    assert volunteer == "10000000001"  # the dashed volunteer phone found the demo volunteer
    again = cli(county, "import", "families", str(path))
    assert "未变 / unchanged: households 1, members 2" in again.stdout and "更新 / updated" not in again.stdout


def test_no_header_row_names_what_is_missing(county: App, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("名册\n编号,镇,名字\nQX1,清溪镇,韦\n", encoding="utf-8")
    result = cli(county, "import", "families", str(path))
    assert result.returncode == 1 and "户编号(household)" in result.stderr and "first 10 rows" in result.stderr


def test_a_template_never_overwrites_a_filled_in_file(tmp_path: Path) -> None:
    filled = tmp_path / "families.xlsx"
    write_xlsx(filled, family_rows())
    before = filled.read_bytes()
    result = subprocess.run([sys.executable, "-m", "bot.cli", "import", "--template", "families", "-o", str(filled)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--force" in result.stderr and "Traceback" not in result.stderr
    assert filled.read_bytes() == before
    forced = subprocess.run([sys.executable, "-m", "bot.cli", "import", "--template", "families", "-o", str(filled),
                             "--force"], capture_output=True, text=True, timeout=120)
    assert forced.returncode == 0 and [c.value for c in load_workbook(filled).worksheets[0][1]] == HEADERS
    assert load_workbook(filled).worksheets[0].max_row == 1


def test_the_county_can_be_named_in_the_configuration(app: App, tmp_path: Path) -> None:
    volunteers = tmp_path / "v.csv"
    volunteers.write_text("姓名,电话,乡镇\n沈志远,100-0000-7001,东湖镇\n", encoding="utf-8")
    refused = cli(app, "import", "volunteers", str(volunteers))
    assert refused.returncode == 1 and "[county] name" in refused.stderr and "--county" in refused.stderr
    config = tmp_path / "county.toml"
    config.write_text('[county]\nname = "示例县"\n', encoding="utf-8")
    done = cli(app, "import", "volunteers", str(volunteers), "--config", str(config))
    assert done.returncode == 0, done.stderr
    with app.db.session() as session:
        assert session.scalar(select(County.name)) == "示例县"
        assert session.scalar(select(Person.phone).where(Person.name == "沈志远")) == "10000007001"


def county_file(path: Path, households: int, *, bad_row: int | None = None, hardship_every: int = 5) -> Path:
    """A county's list in the template's columns: two parents per household (the father with a
    lost child and the demo's first volunteer as contact), in two townships. More rows than one
    statement may bind, so every bulk step runs in several pieces."""
    lines = ["户编号,乡镇,村,姓名,关系,出生日期,电话,困难家庭,联系志愿者,子女姓名,子女去世日期,纳入日期"]
    for h in range(households):
        town, hardship = ("清溪镇", "溪口村") if h % 2 else ("白云乡", "云岭村"), "是" if h % hardship_every == 0 else "否"
        lines.append(f"PX{h:05d},{town[0]},{town[1]},父{h},父亲,1950-01-{1 + h % 28:02d},"
                     f"+86 139 {h:04d} {h % 10000:04d},{hardship},100-0000-0001,子{h},2012-03-04,2026-10-01")
        lines.append(f"PX{h:05d},{town[0]},,母{h},母亲,1952-02-{1 + h % 28:02d},,,,,,")
    if bad_row is not None:
        lines[bad_row - 1] = lines[bad_row - 1].replace("父亲", "舅舅")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_county_sized_file_imports_in_one_go_and_a_bad_last_row_writes_nothing(
        county: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    households = 3_000  # 6,000 rows: past the 5,000 values one statement binds
    people, homes = count(county, Person), count(county, Household)
    bad = county_file(tmp_path / "bad.csv", households, bad_row=2 * households)  # the last household's father
    assert run(county, "import", "families", str(bad)) == 1
    assert "第 6000 行" in capsys.readouterr().err
    assert (count(county, Person), count(county, Household)) == (people, homes)  # nothing half-written
    good = county_file(tmp_path / "good.csv", households)
    assert run(county, "import", "families", str(good)) == 0
    out = capsys.readouterr().out
    assert f"households {households}, members {2 * households}" in out and f"children {households}" in out
    assert f"assignments {households}" in out and "villages 2" in out
    with county.db.session() as session:
        row = session.execute(select(Household.hardship, Household.enrolled_on, Person.phone, DeceasedChild.name)
                              .join(HouseholdMember, HouseholdMember.household_id == Household.id)
                              .join(Person, Person.id == HouseholdMember.person_id)
                              .join(DeceasedChild, DeceasedChild.household_id == Household.id)
                              .where(Household.code == "PX02345", HouseholdMember.relation == "father")).one()
        assert tuple(row) == (True, date(2026, 10, 1), "13923452345", "子2345")
        contacts = session.scalar(select(func.count()).select_from(ContactAssignment).join(
            Household, Household.id == ContactAssignment.household_id).where(Household.code.like("PX%")))
        assert contacts == households
    # the same file again changes nothing; a file with other hardship marks updates just those
    assert run(county, "import", "families", str(good)) == 0
    out = capsys.readouterr().out
    assert f"未变 / unchanged: children {households}, households {households}, members {2 * households}" in out
    assert "更新 / updated" not in out and "新建 / created" not in out
    assert run(county, "import", "families", str(county_file(tmp_path / "v2.csv", households, hardship_every=3))) == 0
    changed = sum(1 for h in range(households) if (h % 5 == 0) != (h % 3 == 0))
    assert f"更新 / updated: households {changed}" in capsys.readouterr().out
