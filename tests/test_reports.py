"""Period reports: every figure of a hand-counted quarter, scopes, periods, chat and fonts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import App
from bot.reports.charts import NO_FONT_WARNING, PACKAGED_FAMILY, find_cjk_font, packaged_font_file
from bot.reports.chat import chart_folder, chat_period
from bot.reports.config import ReportConfig
from bot.reports.model import Report
from bot.reports.periods import PeriodError, parse_period
from bot.reports.service import make_report
from bot.reports.writers import render_html
from dialogs.engine.dialog import action_value
from storage.models import AuditEntry, DialogSession
from tests.chat import Chat
from tests.report_expected import EXPECTED, expected_rows, picked
from tests.report_seed import seed_q3

ADMIN_PHONE = "10000000900"


@pytest.fixture
def q3(county: App) -> App:
    seed_q3(county)
    return county


def report_for(app: App, period: str = "2026-Q3", township: str | None = None) -> Report:
    with app.db.session() as session:
        return make_report(session, app.settings, period=parse_period(period), now=app.services.now(),
                           township=township)


def rows_of(report: Report, key: str) -> list[tuple[object, ...]]:
    table = report.table(key)
    columns = [c.key for c in table.columns]
    return picked(columns, [[row.get(c) for c in columns] for row in table.rows], key)


def test_every_figure_matches_the_hand_count(q3: App) -> None:
    report = report_for(q3)
    wrong = {key: (rows_of(report, key), expected_rows(key)) for key in EXPECTED
             if rows_of(report, key) != expected_rows(key)}
    assert not wrong, "\n".join(f"{k}:\n  got      {g}\n  expected {e}" for k, (g, e) in wrong.items())
    for key, (columns, _rows) in EXPECTED.items():  # and the columns come in the order printed
        keys = [c.key for c in report.table(key).columns]
        assert [k for k in keys if k in columns] == list(columns), key


def test_a_township_report_shows_only_its_households(q3: App) -> None:
    report = report_for(q3, township="清溪镇")
    assert report.scope_label == "清溪镇"
    overview = report.table("overview").rows
    assert [(r["level"], r["name"]) for r in overview] == [("合计", "清溪镇"), ("志愿者", "周建国"), ("志愿者", "林晓燕")]
    assert (overview[0]["households"], overview[0]["served"]) == (4, 3)
    greetings = report.table("greetings").rows[0]
    assert (greetings["greeted"], greetings["expected"], greetings["greeted_pct"]) == (9, 52, 17.3)
    # the county-wide class is listed, but none of its invitations were to this township's families
    activities = {r["title"]: r for r in report.table("activity_list").rows}
    assert activities["智能手机课"]["invited"] == 0 and activities["中秋做月饼"]["attended"] == 1
    assert [r["code"] for r in report.table("money_households").rows] == ["QX001", "QX002", "QX003", "QX004"]
    budget = report.table("budget").rows[0]
    assert budget["annual"] is None and budget["recorded"] == 2400.0  # the budget is the county's
    with pytest.raises(KeyError):
        report.table("budget_sources")


def test_a_period_in_progress_is_judged_on_the_weeks_already_over(q3: App) -> None:
    report = report_for(q3, "2026-11")  # the clock is at Friday 2026-11-20
    greetings = report.table("greetings").rows[0]
    assert greetings["weeks"] == 2  # Nov 2–8 and 9–15; the week of the 16th is not over
    assert any("尚未结束" in w for w in report.warnings)
    future = report_for(q3, "2027")
    assert future.table("overview").rows[0]["served"] == 0
    assert any("还没有开始" in w for w in future.warnings)


def test_unknown_township_is_refused(q3: App) -> None:
    from bot.reports.build import UnknownTownship

    with pytest.raises(UnknownTownship):
        report_for(q3, township="不存在乡")


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026-11", date(2026, 11, 1), date(2026, 11, 30)),
    ("2026-02", date(2026, 2, 1), date(2026, 2, 28)),
    ("2026-Q3", date(2026, 7, 1), date(2026, 9, 30)),
    ("2026q1", date(2026, 1, 1), date(2026, 3, 31)),
    ("2026", date(2026, 1, 1), date(2026, 12, 31)),
    ("2026-01-01..2026-03-31", date(2026, 1, 1), date(2026, 3, 31)),
])
def test_periods_are_read(text: str, start: date, end: date) -> None:
    period = parse_period(text)
    assert (period.start, period.end) == (start, end)


@pytest.mark.parametrize("text", ["2026-13", "2026-Q5", "26", "2026-03-31..2026-01-01", "", "下个月"])
def test_bad_periods_say_which_forms_work(text: str) -> None:
    with pytest.raises(PeriodError, match="2026-Q3"):
        parse_period(text)


def test_weeks_and_months_of_a_period() -> None:
    q3 = parse_period("2026-Q3")
    weeks = q3.complete_weeks(date(2026, 11, 20))
    assert (len(weeks), weeks[0], weeks[-1]) == (13, date(2026, 6, 29), date(2026, 9, 21))
    assert parse_period("2026-Q4").complete_weeks(date(2026, 11, 20))[0] == date(2026, 9, 28)
    assert q3.months() == 3.0 and parse_period("2026-11").months(date(2026, 11, 15)) == 0.5


def test_chat_period_choices() -> None:
    assert chat_period(None, date(2026, 11, 20)).code == "2026-11"
    assert chat_period(None, date(2026, 11, 3)).code == "2026-10"  # the first days show last month
    assert chat_period("quarter", date(2026, 11, 20)).code == "2026-Q4"
    assert chat_period("year", date(2026, 11, 20)).code == "2026"
    assert chat_period("2026-Q3", date(2026, 11, 20)).code == "2026-Q3"


# ------------------------------------------------------------------------------ chat


def _png(payload: dict[str, object]) -> Path:
    attachment = payload.get("attachment")
    assert isinstance(attachment, dict) and attachment["kind"] == "photo"
    path = Path(str(attachment["path"]))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


async def test_coordinator_gets_their_township_with_a_chart(q3: App, coordinator: Chat) -> None:
    [reply] = await coordinator.send("/report")
    text = str(reply["text"])
    assert "清溪镇 · 2026年11月" in text and "服务家庭：2 / 4 户" in text  # demo calls on the 15th and 17th
    path = _png(reply)
    expected_folder = chart_folder(q3.settings, ReportConfig.from_settings(q3.settings))
    assert path.parent == expected_folder  # beside a SQLite file: <its folder>/reports
    labels = [o["label"] for o in reply["options"]]  # type: ignore[union-attr]
    assert labels == ["本月", "上月", "本季度", "今年"]
    [reply] = await coordinator.send("2026-Q3")
    text = str(reply["text"])
    assert "2026年第3季度" in text and "每周问候：覆盖 17.3%（9 / 52 户周）" in text
    assert "节日走访经费：已支出 2,400.00 元 / 期内应得 1,250.00 元" in text
    assert "危险读数：2 条，24 小时内跟进 0 条，尚未跟进 0 条" in text
    _png(reply)
    [reply] = await coordinator.send("2")  # 上月
    assert "2026年10月" in str(reply["text"])
    with coordinator.app.db.session() as session:
        assert session.scalar(select(AuditEntry).where(AuditEntry.entity == "report")) is not None


async def test_admin_gets_the_county(q3: App) -> None:
    admin = Chat(q3, ADMIN_PHONE)
    await admin.send("报表")
    [reply] = await admin.send("2026-Q3")
    text = str(reply["text"])
    assert "青山县（演示） · 2026年第3季度" in text
    assert "服务家庭：6 / 7 户" in text and "每周问候：覆盖 14.3%（13 / 91 户周）" in text
    assert "生日走访：已走访 2 / 应走访 3 人次" in text
    assert "问候覆盖最低：白云乡（7.7%）" in text
    _png(reply)


async def test_a_bad_period_in_chat_is_explained(q3: App, coordinator: Chat) -> None:
    await coordinator.send("/report")
    [reply] = await coordinator.send("2026-13")
    assert "没看懂这个期间" in str(reply["text"]) and "attachment" not in reply
    [reply] = await coordinator.send("本季度")  # the buttons still work after the mistake
    assert "2026年第4季度" in str(reply["text"]) and "attachment" in reply
    [reply] = await coordinator.send("随便")
    assert "没看懂这个期间" in str(reply["text"])


async def test_volunteers_get_no_report(q3: App, volunteer: Chat) -> None:
    replies = await volunteer.send("/report")
    assert "不能使用" in str(replies[0]["text"])  # the keyword is not theirs: refused, no figures
    assert all("attachment" not in r and "每周问候" not in str(r["text"]) for r in replies)
    # even a forged button that starts the report dialog is refused
    with volunteer.app.db.session() as session:
        row = session.scalar(select(DialogSession).where(DialogSession.address == volunteer.address))
        assert row is not None
        row.data = {"_opts": [["forged", action_value("report"), "报表"]]}
    replies = await volunteer.send(option_token="forged")
    assert "暂时不能使用" in str(replies[0]["text"])
    assert all("attachment" not in r and "每周问候" not in str(r["text"]) for r in replies)


# ----------------------------------------------------------------------------- fonts


def test_charts_use_the_font_that_comes_with_pip_install() -> None:
    font = find_cjk_font()
    assert font.family == PACKAGED_FAMILY and font.warning is None
    from matplotlib import font_manager

    chosen = font_manager.findfont(font_manager.FontProperties(family=font.family), fallback_to_default=False)
    assert Path(chosen) == packaged_font_file()


def test_without_a_chinese_font_the_report_warns_clearly(q3: App) -> None:
    font = find_cjk_font(families=(), font_files=[], packaged=False)  # nothing installed
    assert font.family is None and font.warning == NO_FONT_WARNING
    html = render_html(report_for(q3), font)
    assert "未找到中文字体" in html and "noto-cjk-sans-otc" in html
    from bot.commands.report import warning_lines

    lines = warning_lines(report_for(q3), font, "html")
    assert any("pip install" in line for line in lines)


def test_a_report_past_the_listing_limit_sums_volunteers_and_lists_only_overspent_households(
        q3: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """A province's report stays a size people read (and memory holds): past the limit the
    volunteer rows and the per-household money list are summarised, the figures are unchanged.
    Here the limit is 3, below the hand-counted quarter's 4 volunteers and 7 households."""
    import bot.reports.frame as frame

    monkeypatch.setattr(frame, "DETAIL_ROWS", 3)
    report = report_for(q3)
    for key in ("overview", "greetings", "holidays", "health", "birthdays", "money"):
        kept = [r for r in expected_rows(key) if r[0] != "志愿者"]
        assert rows_of(report, key) == kept, key  # total and township rows as hand-counted
    assert any("4 位联系志愿者" in w and "--township" in w for w in report.warnings)
    money = report.table("money_households")
    # over their entitlement: QX004 by 1,225 yuan, QX001 by 325; largest first
    assert [(r["code"], r["balance"]) for r in money.rows] == [("QX004", -1225.0), ("QX001", -325.0)]
    assert money.note is not None and "7 户" in money.note and "2 户" in money.note
    township = report_for(q3, township="清溪镇")  # 2 volunteers are listed; 4 households are over the limit
    assert [r["name"] for r in township.table("overview").rows if r["level"] == "志愿者"] == ["周建国", "林晓燕"]
    assert [r["code"] for r in township.table("money_households").rows] == ["QX004", "QX001"]
