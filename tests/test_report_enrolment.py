"""Per-household targets in reports count from enrolment: holidays owed, health household-months.

Hand count (the clock is at 2026-12-01; the program's nine holidays of 2026 have all passed by
then, the last being 重阳 on Oct 18; 8 a year over 9 listed holidays = 8/9 per holiday owed).
A new township 新河镇 with no contact volunteer, so its township row and the unassigned
volunteer row hold exactly these four households:

| household | enrolled   | holidays owed in 2026       | target      | counted greetings              |
|-----------|------------|-----------------------------|-------------|--------------------------------|
| XH01      | 2026-12-01 | none                        | none        | 0 (重阳 call and message before) |
| XH02      | 2026-09-25 | 中秋 国庆 重阳 (3)            | 2.67 → 3    | 3 (端午 visit before: no)        |
| XH03      | 2026-10-02 | 重阳 (1)                     | 0.89 → 1    | 0 (国庆 call the day before)     |
| XH04      | 2025-06-01 | all nine                    | 8           | 1 (中秋)                         |

2026: households 4, greetings 4, per household 1.0, mean target (0 + 24/9 + 8/9 + 8) / 4 = 2.89,
3 households with a target, 1 met (XH02), 33.3 %.
2026-Q4 (elapsed Oct 1 – Dec 1: 国庆, 重阳): XH01 none; XH02 2 → 1.78 → 2, counted 国庆 重阳 = 2,
met; XH03 1 → 0.89 → 1, counted 0; XH04 2 → 2, counted 0. Greetings 2, mean target
(0 + 16/9 + 8/9 + 16/9) / 4 = 1.11, 3 with a target, 1 met, 33.3 %.
Before this rule every household had the period's whole target (8 for 2026): 0 met, and the
greetings before enrolment counted (7 for 2026).

Health, 2026-Q4 as of Dec 1 (Oct, Nov whole; Dec 1 = 1/31 month). Household-months from
enrolment: XH01 1/31, XH02 2 + 1/31, XH03 30/31 + 1 + 1/31 = 2, XH04 2 + 1/31: 6.10 in all.
Readings: XH01 Nov 20 (before it joined), XH02 Oct 5 and 6, XH03 Oct 1 (before) and Oct 3.
Service days counted 3; per household-month 3 / 6.10 = 0.49 (before: 5 / (4 × 2.03) = 0.62).
Whole months owed: XH01 none, XH02 Oct Nov, XH03 Nov, XH04 Oct Nov = 5; met: XH02 in Oct.

Holiday-visit money, entitled 1,000 yuan a year (not hardship), for the whole period from
enrolment: 2026-Q4 (3 months) XH01 Dec = 1 month → 83.33, XH02 250.00, XH03 30/31 + 2 months →
247.31, XH04 250.00; the township 830.65 (was 4 × 250 = 1,000). 2026: XH01 83.33, XH02 Sep
25–30 = 6/30 + 3 months → 266.67, XH03 247.31, XH04 1,000.00.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app import App
from bot.cli import main
from bot.reports.periods import parse_period
from bot.reports.service import make_report
from storage.models import Greeting
from tests.conftest import TEST_DATA_KEY
from tests.report_seed import Seeder, at

TZ = ZoneInfo("Asia/Shanghai")
COLUMNS = ("households", "greetings", "per_household", "target", "owing", "met", "met_pct")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)
    monkeypatch.setenv("WARMLINE_NOW", "2026-12-01T10:00:00+08:00")


def holidays(app: App, period: str) -> dict[tuple[str, str], tuple[object, ...]]:
    with app.db.session() as session:
        report = make_report(session, app.settings, period=parse_period(period),
                             now=datetime(2026, 12, 1, 10, tzinfo=TZ))
    return {(r["level"], r["name"]): tuple(r.get(c) for c in COLUMNS) for r in report.table("holidays").rows}


def add_newcomers(county: App, tmp_path: Path) -> None:
    path = tmp_path / "families.csv"
    path.write_text("户编号,乡镇,姓名,关系,电话,纳入日期\n"
                    "XH01,新河镇,韦冬梅,母亲,13800007101,2026-12-01\n"
                    "XH02,新河镇,韦秋生,父亲,13800007102,2026-09-25\n"
                    "XH03,新河镇,韦国华,父亲,13800007103,2026-10-02\n"
                    "XH04,新河镇,韦端阳,母亲,13800007104,2025-06-01\n", encoding="utf-8")
    assert main(["--db", county.settings.database_url, "import", "families", str(path)]) == 0
    with county.db.session() as session:
        s = Seeder(session)
        s.visit("XH01", "2026-10-18", "phone", occasion="double_ninth")  # before it joined
        sent = s.outbox(channel="wechat", kind="greeting", status="sent", created=at("2026-10-18", "09:00"),
                        person="韦冬梅", sent=at("2026-10-18", "10:00"))
        session.add(Greeting(household_id=s.h["XH01"], member_person_id=s.p["韦冬梅"].id,  # before it joined
                             occasion="double_ninth", year=2026, channel="wechat", outbox_id=sent.id, status="sent"))
        s.visit("XH02", "2026-06-19", "home", occasion="dragon_boat")  # before it joined
        s.visit("XH02", "2026-09-25", "home", occasion="mid_autumn")
        s.visit("XH02", "2026-10-01", "phone", occasion="national_day")
        s.visit("XH02", "2026-10-18", "card", occasion="double_ninth")
        s.visit("XH03", "2026-10-01", "phone", occasion="national_day")  # the day before it joined
        s.visit("XH04", "2026-09-25", "home", occasion="mid_autumn")
        for code, day in (("XH01", "2026-11-20"), ("XH02", "2026-10-05"), ("XH02", "2026-10-06"),
                          ("XH03", "2026-10-01"), ("XH03", "2026-10-03")):
            s.reading(code, at(day, "08:30"))


TOWN, NOBODY = ("乡镇", "新河镇"), ("志愿者", "（未分配联系人）")


def test_a_household_owes_only_the_holidays_since_it_joined(county: App, tmp_path: Path) -> None:
    before = {p: holidays(county, p) for p in ("2026", "2026-Q4")}
    assert TOWN not in before["2026"] and NOBODY not in before["2026"]
    add_newcomers(county, tmp_path)
    year, q4 = holidays(county, "2026"), holidays(county, "2026-Q4")
    assert year[TOWN] == year[NOBODY] == (4, 4, 1.0, 2.89, 3, 1, 33.3)
    assert q4[TOWN] == q4[NOBODY] == (4, 2, 0.5, 1.11, 3, 1, 33.3)
    # the county's total row adds exactly these households' targets and greetings
    for period, now in (("2026", year), ("2026-Q4", q4)):
        total, old = next(iter(now.values())), next(iter(before[period].values()))
        added = now[TOWN]
        assert total[0] == old[0] + 4 and total[1] == old[1] + added[1]
        assert (total[4], total[5]) == (old[4] + 3, old[5] + 1)
    with county.db.session() as session:
        report = make_report(session, county.settings, period=parse_period("2026"),
                             now=datetime(2026, 12, 1, 10, tzinfo=TZ))
    assert "纳入项目当天及以后" in report.section("holidays").definition



def test_health_services_count_household_months_from_enrolment(county: App, tmp_path: Path) -> None:
    add_newcomers(county, tmp_path)
    with county.db.session() as session:
        report = make_report(session, county.settings, period=parse_period("2026-Q4"),
                             now=datetime(2026, 12, 1, 10, tzinfo=TZ))
    row = report.table("health").row(level="乡镇", name="新河镇")
    got = tuple(row[k] for k in ("households", "service_days", "per_household_month", "expected_months",
                                 "met_months", "met_pct"))
    assert got == (4, 3, 0.49, 5, 1, 20.0)


def test_money_is_owed_only_from_enrolment(county: App, tmp_path: Path) -> None:
    add_newcomers(county, tmp_path)
    entitled = {}
    for period in ("2026-Q4", "2026"):
        with county.db.session() as session:
            report = make_report(session, county.settings, period=parse_period(period),
                                 now=datetime(2026, 12, 1, 10, tzinfo=TZ))
        rows = {r["code"]: r["entitled"] for r in report.table("money_households").rows if r["code"].startswith("XH")}
        entitled[period] = (rows, report.table("money").row(level="乡镇", name="新河镇")["entitled"])
        assert "从纳入日期起算" in report.section("money").definition
    assert entitled["2026-Q4"] == ({"XH01": 83.33, "XH02": 250.0, "XH03": 247.31, "XH04": 250.0}, 830.65)
    assert entitled["2026"][0] == {"XH01": 83.33, "XH02": 266.67, "XH03": 247.31, "XH04": 1000.0}
