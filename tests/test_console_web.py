"""The web console's sign-in, sessions, CSRF and today page, through the real ASGI app on the
test database (SQLite, or PostgreSQL with WARMLINE_TEST_DATABASE_URL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bot.app import App
from dialogs.services import FixedClock
from storage.models import ActionToken, AuditEntry, HealthReading, Household, Person
from tests.chat import Chat
from tests.console_web import client, csrf_of, link_from_chat, post, sign_in


def audit_rows(app: App, entity: str) -> list[AuditEntry]:
    with app.db.session() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.entity == entity)))


async def test_a_link_from_chat_signs_a_coordinator_in_once(county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        first = await web.get("/console/")
        assert first.status_code == 303 and first.headers["location"].startswith("/console/sign-in")
        token, _ = await link_from_chat(coordinator)
        landing = await web.get(f"/console/sign-in/{token}")
        assert landing.status_code == 200 and "只能用一次" in landing.text
        assert await web.get(f"/console/sign-in/{token}") is not None  # looking twice spends nothing
        response = await web.post(f"/console/sign-in/{token}", data={"csrf": csrf_of(landing.text)})
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # plain http on localhost
        today = await web.get("/console/")
        assert today.status_code == 200 and "郑丽华" in today.text and "今日待办" in today.text
    async with client(county) as other:  # the same link in another browser: spent
        again = await other.get(f"/console/sign-in/{token}")
        assert again.status_code == 410 and "已经用过" in again.text
        csrf = csrf_of((await other.get("/console/sign-in")).text)
        spent = await other.post(f"/console/sign-in/{token}", data={"csrf": csrf})
        assert spent.status_code == 410 and "wl_console" not in spent.headers.get("set-cookie", "")
    [entry] = audit_rows(county, "console_session")
    assert entry.detail == "link" and entry.actor_id == coordinator.person().id  # type: ignore[union-attr]


async def test_a_link_expires_and_only_the_newest_works(county: App, coordinator: Chat,
                                                         clock: FixedClock) -> None:
    old, _ = await link_from_chat(coordinator)
    new, _ = await link_from_chat(coordinator)
    async with client(county) as web:
        assert (await web.get(f"/console/sign-in/{old}")).status_code == 410
        assert (await web.get(f"/console/sign-in/{new}")).status_code == 200
        clock.advance(minutes=11)
        assert (await web.get(f"/console/sign-in/{new}")).status_code == 410


async def test_the_six_digit_code_signs_in_and_guessing_is_locked_out(county: App,
                                                                       coordinator: Chat) -> None:
    _, code = await link_from_chat(coordinator)
    async with client(county) as web:
        form = await web.get("/console/sign-in")
        csrf = csrf_of(form.text)
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(5):
            bad = await web.post("/console/sign-in", data={"csrf": csrf, "code": wrong})
            assert bad.status_code == 400 and "验证码不对" in bad.text
        locked = await web.post("/console/sign-in", data={"csrf": csrf, "code": code})
        assert locked.status_code == 429, "after five wrong codes even the right one waits"
    async with client(county) as web:  # CSRF without the browser's own cookie fails
        response = await web.post("/console/sign-in", data={"csrf": csrf, "code": code})
        assert response.status_code == 403


async def test_the_code_form_signs_in_and_goes_where_it_was_asked(county: App, coordinator: Chat) -> None:
    _, code = await link_from_chat(coordinator)
    async with client(county) as web:
        form = await web.get("/console/sign-in?next=/console/?show=overdue")
        response = await web.post("/console/sign-in", data={
            "csrf": csrf_of(form.text), "code": f"{code[:3]} {code[3:]}", "next": "/console/?show=overdue"})
        assert response.status_code == 303 and response.headers["location"] == "/console/?show=overdue"
        evil = await web.get("/console/sign-in?next=https://evil.example/")
        assert 'value="/console/"' in evil.text


@pytest.mark.parametrize("phone", ["10000000001", "family"])
async def test_volunteers_and_families_never_get_a_link(county: App, phone: str) -> None:
    if phone == "family":
        with county.db.session() as session:
            person = session.scalar(select(Person).where(Person.role == "family"))
            assert person is not None
            person.phone = "19900000001"
        phone = "19900000001"
    chat = Chat(county, phone)
    reply = await chat.say("网页版")
    assert "/console/sign-in/" not in reply
    with county.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ActionToken)
                              .where(ActionToken.channel == "web-link")) == 0


async def test_a_coordinator_demoted_to_volunteer_loses_the_session(county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        assert (await web.get("/console/")).status_code == 200
        with county.db.session() as session:
            session.execute(update(Person).where(Person.phone == "10000000101").values(role="volunteer"))
        assert (await web.get("/console/")).status_code == 303


async def test_a_forged_or_missing_cookie_opens_nothing(county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        cookie = web.cookies.get("wl_console", path="/console")
        assert cookie
    async with client(county) as web:
        secret, _, mac = cookie.rpartition(".")
        web.cookies.set("wl_console", f"{secret}.{'0' * len(mac)}", path="/console")
        assert (await web.get("/console/")).status_code == 303
        web.cookies.set("wl_console", cookie, path="/console")
        assert (await web.get("/console/")).status_code == 200


async def test_session_expires(county: App, coordinator: Chat, clock: FixedClock) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        clock.advance(hours=12, minutes=1)
        assert (await web.get("/console/")).status_code == 303


async def test_sign_out_needs_csrf_and_sign_out_everywhere_ends_every_browser(
        county: App, coordinator: Chat) -> None:
    async with client(county) as laptop, client(county) as phone:
        await sign_in(laptop, coordinator)
        await sign_in(phone, coordinator)
        forged = await laptop.post("/console/sign-out", data={"csrf": "0" * 32})
        assert forged.status_code == 403 and "页面已过期" in forged.text
        assert (await laptop.get("/console/")).status_code == 200, "a forged POST ended nothing"
        response = await post(laptop, "/console/sign-out")
        assert response.status_code == 200 and "退出" in response.text
        assert (await laptop.get("/console/")).status_code == 303
        assert (await phone.get("/console/")).status_code == 200, "signing out here keeps the phone"
        await sign_in(laptop, coordinator)
        response = await post(laptop, "/console/sign-out-everywhere")
        assert response.status_code == 200
        assert (await laptop.get("/console/")).status_code == 303
        assert (await phone.get("/console/")).status_code == 303
    assert {e.detail for e in audit_rows(county, "console_session")} >= {
        "link", "sign_out", "sign_out_everywhere:2"}


async def test_cookies_are_secure_behind_tls(db_url: str, clock: FixedClock) -> None:
    from bot.app import build_app
    from bot.config import load_settings
    from bot.demo import seed_demo
    from tests.conftest import TEST_DATA_KEY

    app = build_app(load_settings(db=db_url, env={
        "WARMLINE_DATA_KEY": TEST_DATA_KEY, "WARMLINE_CONSOLE_URL": "https://warmline.example/console"}),
        clock=clock)
    with app.db.session() as session:
        seed_demo(session, clock.now())
    chat = Chat(app, "10000000101")
    text = await chat.say("网页版")
    assert "https://warmline.example/console/sign-in/" in text
    async with client(app, "https://warmline.example") as web:
        response = await sign_in(web, chat)
        assert "Secure" in response.headers["set-cookie"]
    await app.db.adispose()


# ------------------------------------------------------------------ today


async def test_today_lists_only_the_coordinators_township_and_filters_overdue(
        county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        page = await web.get("/console/")
        assert page.status_code == 200
        assert "QX001" in page.text and "清溪镇" in page.text
        assert "BY001" not in page.text and "CL001" not in page.text, "another township's household"
        assert page.headers["cache-control"] == "no-store"
        overdue = await web.get("/console/?show=overdue")
        assert overdue.status_code == 200
        assert 'badge due' not in overdue.text, "the overdue list shows only overdue tasks"


async def test_today_shows_danger_readings_until_someone_follows_up(county: App, coordinator: Chat,
                                                                     clock: FixedClock) -> None:
    with county.db.session() as session:
        ids = {code: hid for code, hid in session.execute(select(Household.code, Household.id))}
        for code in ("QX002", "BY002"):
            session.add(HealthReading(household_id=ids[code], systolic=192, diastolic=114,
                                      measured_at=clock.now() - timedelta(hours=5), danger=True,
                                      danger_reasons="bp_high"))
    async with client(county) as web:
        await sign_in(web, coordinator)
        page = await web.get("/console/")
        section = page.text.split('id="danger-h"')[1].split("</section>")[0]
        assert "QX002" in section and "192/114" in section and "5 小时" in section
        assert "BY002" not in section
        with county.db.session() as session:
            session.execute(update(HealthReading).where(HealthReading.household_id == ids["QX002"])
                            .values(followed_up_at=clock.now()))
        page = await web.get("/console/")
        assert "QX002" not in page.text.split('id="danger-h"')[1].split("</section>")[0]


async def test_an_admin_sees_every_township(county: App) -> None:
    admin = Chat(county, "10000000900")
    async with client(county) as web:
        await sign_in(web, admin)
        page = await web.get("/console/")
        assert page.status_code == 200
        for code in ("QX001", "BY001", "CL001"):
            assert code in page.text
