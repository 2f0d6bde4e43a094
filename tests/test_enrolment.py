"""A household owes nothing before it joined the program: reports and the planner both agree."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.app import App
from bot.care.planner import plan
from bot.care.policy import Policy
from bot.cli import main
from bot.reports.periods import parse_period
from bot.reports.service import make_report
from storage.models import Household
from tests.conftest import TEST_DATA_KEY

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)
    monkeypatch.setenv("WARMLINE_NOW", "2026-12-01T10:00:00+08:00")


def import_csv(app: App, path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    assert main(["--db", app.settings.database_url, "import", "families", str(path)]) == 0


def total_row(app: App, period: str, table: str) -> dict[str, object]:
    with app.db.session() as session:
        report = make_report(session, app.settings, period=parse_period(period),
                             now=datetime(2026, 12, 1, 10, tzinfo=TZ))
    return report.table(table).rows[0]


def test_households_imported_in_december_owe_nothing_in_the_third_quarter(county: App, tmp_path: Path) -> None:
    before = {k: total_row(county, "2026-Q3", k) for k in ("overview", "greetings", "health")}
    import_csv(county, tmp_path / "f.csv",
               "户编号,乡镇,姓名,关系\nQX201,清溪镇,韦长青,父亲\nQX202,清溪镇,韦秋菊,母亲\n")
    with county.db.session() as session:
        days = set(session.scalars(select(Household.enrolled_on).where(Household.code.in_(("QX201", "QX202")))))
    assert days == {date(2026, 12, 1)}  # no enrolled_on column: the import date
    after = {k: total_row(county, "2026-Q3", k) for k in ("overview", "greetings", "health")}
    assert after == before  # not one more household, household-week or household-month owed
    december = total_row(county, "2026-12", "overview")
    assert december["households"] == before["overview"]["households"] + 2


def test_a_household_enrolled_mid_quarter_owes_only_the_weeks_and_months_after(county: App, tmp_path: Path) -> None:
    before = total_row(county, "2026-Q3", "greetings"), total_row(county, "2026-Q3", "health")
    # 2026-08-03 is the Monday of Q3's sixth ISO week: weeks 6..13 are owed, and of the whole
    # months only September (August had begun before the household joined).
    import_csv(county, tmp_path / "f.csv", "户编号,乡镇,姓名,关系,纳入日期\nQX203,清溪镇,韦大河,父亲,2026-08-03\n")
    greetings, health = total_row(county, "2026-Q3", "greetings"), total_row(county, "2026-Q3", "health")
    assert greetings["households"] == before[0]["households"] + 1
    assert greetings["expected"] == before[0]["expected"] + 8
    assert health["expected_months"] == before[1]["expected_months"] + 1


def test_the_planner_asks_nothing_due_before_enrolment(county: App, tmp_path: Path) -> None:
    import_csv(county, tmp_path / "f.csv", "户编号,乡镇,姓名,关系,纳入日期\nQX204,清溪镇,韦小溪,母亲,2026-12-10\n")
    with county.db.session() as session:
        hid = session.scalar(select(Household.id).where(Household.code == "QX204"))
        tasks = plan(session, datetime(2026, 12, 1, 10, tzinfo=TZ), Policy.default(), household_ids=[hid])
    assert tasks and all(t.due >= date(2026, 12, 10) for t in tasks)
    assert not {t.status for t in tasks} & {"overdue", "missed"}
