"""A coordinator's morning in the web console, in a real browser.

`warmline run` runs as a real process (the real python-telegram-bot against the fake Bot API,
a real SQLite file); Debian's Chromium, driven by Playwright, does what 郑丽华 does on a
Monday: asks for a sign-in link in Telegram, opens it, reads the overdue list and a family
card, uploads a spreadsheet with one bad row, fixes and imports it, sends an activity and
watches a volunteer's answer (pressed in Telegram) arrive, and downloads the quarter's report.
Every page is photographed into test-screenshots/console/ (not committed).

Nothing is downloaded at run time: the browser is the distribution's (`apt-get install
chromium`, done by .ci/run). Without it, or without the `playwright` package, the test is
skipped and says why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from storage.models import Household, Task
from tests.conftest import START
from tests.fakes.telegram_api import FakeBotAPI, TgUser, wait_until
from tests.test_telegram_e2e import BotProcess, World, linked, make_world, text_of

CHROMIUM = Path(os.environ.get("WARMLINE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(os.environ.get("WARMLINE_SCREENSHOTS", Path(__file__).resolve().parent.parent
                            / "test-screenshots" / "console"))

REQUIRED = bool(os.environ.get("WARMLINE_REQUIRE_BROWSER"))  # .ci/run: absent is a failure


def _missing(reason: str) -> None:
    if REQUIRED:
        raise RuntimeError(f"WARMLINE_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason, allow_module_level=True)


try:
    import playwright.sync_api as playwright_api
except ImportError:
    _missing("the browser test needs the playwright package (pip install -e '.[browser]')")
if shutil.which(str(CHROMIUM)) is None:
    _missing(f"the browser test needs Chromium at {CHROMIUM} (apt-get install chromium)")

FAMILIES = [["户编号", "乡镇", "村", "姓名", "关系", "性别", "出生日期"],
            ["QX201", "清溪镇", "桃园村", "冯德顺", "父亲", "男", "1951-04-09"],
            ["QX201", "清溪镇", "桃园村", "蒋秀英", "母亲", "女", "1953-02-30"],  # no such day
            ["QX202", "清溪镇", "石桥村", "韩玉兰", "母亲", "女", "1949-12-01"]]


def spreadsheet(path: Path, rows: list[list[str]]) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[tuple[FakeBotAPI, World, BotProcess]]:
    api = FakeBotAPI().start()
    world = make_world(tmp_path_factory.mktemp("console-browser"), template_db)
    bot = BotProcess(api, world)
    bot.start()
    yield api, world, bot
    try:
        assert bot.stop() == 0
    finally:
        if bot.proc is not None and bot.proc.proc.poll() is None:
            bot.kill()
        world.app.db.dispose()
        api.stop()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_coordinators_morning_in_the_browser(running: tuple[FakeBotAPI, World, BotProcess],
                                               tmp_path: Path) -> None:
    api, world, bot = running
    with world.app.db.session() as session:  # a call promised last week and not yet made
        qx001 = session.scalar(select(Household).where(Household.code == "QX001"))
        assert qx001 is not None
        session.add(Task(household_id=qx001.id, kind="call_back", reason="回电话：王德福说腿又疼了",
                         due_at=START - timedelta(days=4), created_at=START - timedelta(days=9)))
    coordinator = linked(api, 7101, "10000000101")
    volunteer = linked(api, 7102, "10000000001")
    reply = text_of(coordinator.say("网页版"))
    link = next(word for word in reply.split() if "/console/sign-in/" in word)
    assert link.startswith(f"http://127.0.0.1:{bot.port}/console/sign-in/")

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN",
                                      accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(20_000)

        # sign in with the link from chat: one button, then today's list
        page.goto(link)
        shot(page, "00-sign-in")
        page.get_by_role("button", name="登录").click()
        page.wait_for_url("**/console/")
        assert "郑丽华" in page.inner_text("header")
        shot(page, "01-today")

        # the overdue list, then the family card of its first household
        page.get_by_role("link", name="逾期").first.click()
        page.wait_for_url("**show=overdue")
        rows = page.locator("table.tasks tbody tr")
        assert rows.count() > 0 and page.locator("table.tasks .badge.due").count() == 0
        assert "BY0" not in page.inner_text("main"), "another township's households never show"
        shot(page, "02-overdue")
        assert "回电话：王德福说腿又疼了" in page.inner_text("main")
        page.locator("table.tasks tbody td a").first.click()
        page.wait_for_url("**/console/households/QX001")
        assert "联系志愿者" in page.inner_text("pre.card-text")
        shot(page, "03-family-card")

        # a spreadsheet with one bad row: highlighted, nothing imported; fixed: imported whole
        page.get_by_role("link", name="导入").first.click()
        page.set_input_files("#file", str(spreadsheet(tmp_path / "families.xlsx", FAMILIES)))
        page.get_by_role("button", name="上传并检查").click()
        page.wait_for_selector("#import-errors")
        bad = page.locator("tr.row-error")
        assert bad.count() == 1 and bad.get_attribute("data-error-row") == "3"
        assert page.locator("tr.row-error td.cell-error").inner_text() == "1953-02-30"
        shot(page, "04-import-bad-row")
        assert world.scalar(select(Household).where(Household.code == "QX201")) is None
        FAMILIES[2][6] = "1953-02-28"
        page.set_input_files("#file", str(spreadsheet(tmp_path / "families-fixed.xlsx", FAMILIES)))
        page.get_by_role("button", name="上传并检查").click()
        page.locator("#confirm-import").click()
        page.wait_for_selector("#import-done")
        shot(page, "05-imported")
        assert world.scalar(select(Household).where(Household.code == "QX201")) is not None

        # compose an activity for the township's volunteers; a volunteer answers in Telegram
        page.get_by_role("link", name="活动").first.click()
        page.get_by_role("link", name="发布活动").click()
        page.select_option("#type", "health_day")
        page.fill("#title", "健康义诊")
        page.fill("#when", "11月25日 下午2点")
        page.fill("#place", "镇卫生院二楼")
        page.locator("#preview-button").click()
        assert "能通知到 2 人" in page.inner_text("#preview")
        shot(page, "06-activity-preview")
        with page.expect_navigation():
            page.press("#title", "Enter")  # Enter in a field previews again, it never sends
        assert page.url.endswith("/console/activities/new") and page.locator("#send-now").count() == 1
        page.locator("#send-now").click()
        page.wait_for_url("**/console/activities/*")
        invitation = volunteer.wait_for("健康义诊", timeout=20)
        assert page.locator('#live-counts [data-count="yes"]').inner_text() == "0"
        volunteer.press("参加", invitation)
        # the page's own script refreshes the counts: no reload
        playwright_api.expect(page.locator('#live-counts [data-count="yes"]')).to_have_text("1", timeout=20_000)
        shot(page, "07-activity-rsvp")

        # the quarter's report: charts on the page, the workbook downloaded
        page.get_by_role("link", name="报表").first.click()
        page.get_by_role("link", name="本季度").click()
        page.wait_for_selector("figure img")
        shot(page, "08-report")
        with page.expect_download() as download:
            page.locator("#download-xlsx").click()
        saved = tmp_path / "report.xlsx"
        download.value.save_as(saved)
        assert "说明" in load_workbook(saved).sheetnames

        # the same console on a phone
        phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                    is_mobile=True, has_touch=True)
        phone.add_cookies(context.cookies())
        small = phone.new_page()
        small.goto(f"http://127.0.0.1:{bot.port}/console/")
        wait_until(lambda: "今日待办" in small.inner_text("main"), 10)
        shot(small, "09-today-phone")
        browser.close()
    assert isinstance(coordinator, TgUser)
