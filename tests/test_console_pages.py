"""The web console's pages and forms: status, scope, CSRF and audit rows, on the test database."""

from __future__ import annotations

import zipfile
from io import BytesIO

from openpyxl import load_workbook
from sqlalchemy import select

from bot.app import App
from storage.models import (
    Activity,
    AuditEntry,
    Household,
    Invitation,
    OutboxMessage,
    Person,
    Township,
)
from tests.chat import Chat
from tests.console_web import client, csrf_of, post, sign_in


def audits(app: App, entity: str, action: str | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.entity == entity)
    if action:
        query = query.where(AuditEntry.action == action)
    with app.db.session() as session:
        return list(session.scalars(query))


def household_id(app: App, code: str) -> int:
    with app.db.session() as session:
        hid = session.scalar(select(Household.id).where(Household.code == code))
    assert hid is not None
    return hid


# ------------------------------------------------------------------ households


async def test_households_list_is_the_township_and_search_finds_a_parent(county: App,
                                                                         coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        page = await web.get("/console/households")
        assert page.status_code == 200
        assert all(code in page.text for code in ("QX001", "QX002", "QX003", "QX004"))
        assert "BY001" not in page.text and "CL001" not in page.text
        found = await web.get("/console/households", params={"q": "陈秀珍"})
        assert "QX002" in found.text and "QX001" not in found.text
        nothing = await web.get("/console/households", params={"q": "吴金山"})  # 白云乡's father
        assert "BY001" not in nothing.text and "没有找到" in nothing.text


async def test_the_family_card_is_the_chats_card_and_every_opening_is_audited(county: App,
                                                                              coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        card = await web.get("/console/households/QX001")
        assert card.status_code == 200
        assert "王德福" in card.text and "李桂芳" in card.text and "联系志愿者：林晓燕" in card.text
        assert "王小军" not in card.text, "the child's details stay in the file, as in chat"
        assert "要为这一户做什么" not in card.text
        other = await web.get("/console/households/BY001")
        missing = await web.get("/console/households/NOPE")
        assert other.status_code == missing.status_code == 404
        assert "吴金山" not in other.text
    [entry] = audits(county, "household_card")
    assert entry.action == "read" and entry.household_id == household_id(county, "QX001")
    assert entry.actor_id == coordinator.person().id  # type: ignore[union-attr]


async def test_export_is_a_workbook_behind_csrf_and_audited(county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        forged = await web.post("/console/households/QX001/export", data={"csrf": "x"})
        assert forged.status_code == 403 and not audits(county, "household", "export")
        response = await post(web, "/console/households/QX001/export", form_page="/console/households/QX001")
        assert response.status_code == 200
        assert response.headers["content-disposition"] == 'attachment; filename="family-QX001.xlsx"'
        book = load_workbook(BytesIO(response.content))
        assert "成员" in book.sheetnames
        members = "\n".join(str(c.value) for row in book["成员"].iter_rows() for c in row)
        assert "王德福" in members
        other = await post(web, "/console/households/BY001/export", form_page="/console/households")
        assert other.status_code == 404
    [entry] = audits(county, "household", "export")
    assert entry.household_id == household_id(county, "QX001") and "console" in (entry.detail or "")


# ------------------------------------------------------------------ imports

HEADER = "户编号,乡镇,村,姓名,关系,性别,出生日期\n"
GOOD = HEADER + "QX101,清溪镇,桃园村,钱大海,父亲,男,1950-01-02\nQX101,清溪镇,桃园村,孙小花,母亲,女,1951-03-04\n"
BAD = GOOD.replace("1951-03-04", "1951-13-40")


def households_named(app: App, code: str) -> int:
    with app.db.session() as session:
        return len(list(session.scalars(select(Household).where(Household.code == code))))


async def upload(web: object, text: str, kind: str = "families", name: str = "list.csv") -> object:
    page = await web.get("/console/imports")  # type: ignore[attr-defined]
    return await web.post("/console/imports/preview", data={"csrf": csrf_of(page.text), "kind": kind},  # type: ignore[attr-defined]
                          files={"file": (name, text.encode("utf-8"), "text/csv")})


async def test_a_bad_row_is_highlighted_and_nothing_is_imported_until_the_file_is_clean(
        county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        bad = await upload(web, BAD)
        assert bad.status_code == 422
        assert 'data-error-row="3"' in bad.text and 'data-error-row="2"' not in bad.text
        assert 'class="cell-error">1951-13-40' in bad.text, "the bad cell itself is marked"
        assert "confirm-import" not in bad.text
        assert households_named(county, "QX101") == 0
        good = await upload(web, GOOD)
        assert good.status_code == 200 and "confirm-import" in good.text
        assert households_named(county, "QX101") == 0, "checking imports nothing"
        content = good.text.split('name="content" value="')[1].split('"')[0]
        forged = await web.post("/console/imports/confirm", data={
            "csrf": "nope", "kind": "families", "filename": "list.csv", "content": content})
        assert forged.status_code == 403 and households_named(county, "QX101") == 0
        done = await web.post("/console/imports/confirm", data={
            "csrf": csrf_of(good.text), "kind": "families", "filename": "list.csv", "content": content})
        assert done.status_code == 200 and "已导入 2 行" in done.text
        assert households_named(county, "QX101") == 1
    [entry] = audits(county, "import_families")
    assert entry.actor_id == coordinator.person().id  # type: ignore[union-attr]


async def test_a_coordinator_imports_only_into_their_township(county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        other = await upload(web, GOOD.replace("清溪镇", "白云乡"))
        assert other.status_code == 422 and "乡镇只能是清溪镇" in other.text
        moved = await upload(web, HEADER + "BY001,清溪镇,桃园村,吴金山,父亲,男,1953-07-07\n")
        assert moved.status_code == 422 and "别的乡镇" in moved.text
        staff = await upload(web, "姓名,电话,乡镇,角色\n冒名,10000000900,清溪镇,管理员\n", kind="volunteers")
        assert staff.status_code == 422 and "只能是志愿者" in staff.text
        takeover = await upload(web, "姓名,电话,乡镇,角色\n冒名,10000000102,清溪镇,志愿者\n", kind="volunteers")
        assert takeover.status_code == 422 and "别的乡镇" in takeover.text
    admin = Chat(county, "10000000900")
    async with client(county) as web:
        await sign_in(web, admin)
        assert (await upload(web, GOOD.replace("清溪镇", "白云乡"))).status_code == 200


async def test_an_unreadable_file_and_templates(county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        wrong = await upload(web, "hello", name="notes.txt")
        assert wrong.status_code == 400 and "只支持" in wrong.text
        missing = await upload(web, "姓名\n张三\n")
        assert missing.status_code == 422 and "缺少列" in missing.text
        template = await web.get("/console/imports/template/families/xlsx")
        assert template.status_code == 200
        sheet = load_workbook(BytesIO(template.content)).active
        assert sheet is not None and sheet["A1"].value == "户编号"
        csv_template = await web.get("/console/imports/template/volunteers/csv")
        assert csv_template.content.decode("utf-8-sig").startswith("姓名,电话")


# ------------------------------------------------------------------ activities


async def compose(web: object, **fields: str) -> object:
    form = await web.get("/console/activities/new")  # type: ignore[attr-defined]
    data = {"csrf": csrf_of(form.text), "type": "health_day", "title": "健康义诊", "when": "11月25日 下午2点",
            "place": "镇卫生院", "capacity": "", "audience": "township_volunteers", "message": "", **fields}
    return await web.post("/console/activities/new", data=data)  # type: ignore[attr-defined]


async def test_compose_previews_then_sends_and_an_rsvp_shows_in_the_counts(county: App,
                                                                           coordinator: Chat) -> None:

    volunteer = Chat(county, "10000000001")
    await volunteer.say("菜单")  # the volunteer has opened the bot, so invitations reach them
    async with client(county) as web:
        await sign_in(web, coordinator)
        previewed = await compose(web, action="preview")
        assert previewed.status_code == 200 and 'id="send-now"' in previewed.text
        assert "能通知到 2 人" in previewed.text  # 清溪镇's two volunteers
        with county.db.session() as session:
            assert session.scalar(select(Activity)) is None, "a preview saves nothing"
        sent = await compose(web, action="send")
        assert sent.status_code == 303
        detail_url = sent.headers["location"]
        with county.db.session() as session:
            activity = session.scalar(select(Activity))
            assert activity is not None and activity.status == "sent" and activity.title == "健康义诊"
            invitation = session.scalar(select(OutboxMessage).where(
                OutboxMessage.kind == "invitation", OutboxMessage.address == "10000000001"))
            assert invitation is not None
            token = next(o["token"] for o in invitation.payload["options"] if o["label"] == "参加")
        counts = (await web.get(f"{detail_url}/counts")).json()
        assert counts["invited"] == 2 and counts["yes"] == 0
        await volunteer.send(option_token=token)
        counts = (await web.get(f"{detail_url}/counts")).json()
        assert counts["yes"] == 1 and counts["no_answer"] == 1
        detail = await web.get(detail_url)
        assert detail.status_code == 200 and "林晓燕" in detail.text
    [entry] = audits(county, "activity")
    assert entry.actor_id == coordinator.person().id  # type: ignore[union-attr]


async def test_compose_uses_the_chats_rules_and_words(county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        past = await compose(web, when="11月1日 上午9点", action="preview")
        assert past.status_code == 422 and "这个时间已经过了" in past.text
        full = await compose(web, capacity="很多", action="preview")
        assert full.status_code == 422 and "请写人数" in full.text
        other = await compose(web, audience="households", households="QX001, BY001", action="preview")
        assert other.status_code == 422 and "没找到这些家庭：BY001" in other.text
        county_wide = await compose(web, audience="all_volunteers", action="send")
        assert county_wide.status_code == 422, "a coordinator cannot invite the county"
        late = await compose(web, action="schedule", send_at="11月26日 上午9点")
        assert late.status_code == 422 and "发送时间要在活动开始之前" in late.text
        forged = await web.post("/console/activities/new", data={"csrf": "x", "action": "send"})
        assert forged.status_code == 403
    with county.db.session() as session:
        assert session.scalar(select(Activity)) is None


async def test_attendance_after_the_start_and_another_townships_activity_is_hidden(
        county: App, coordinator: Chat, clock: object) -> None:

    volunteer = Chat(county, "10000000001")
    await volunteer.say("菜单")
    async with client(county) as web:
        await sign_in(web, coordinator)
        url = (await compose(web, action="send")).headers["location"]
        with county.db.session() as session:
            invitation = session.scalar(select(Invitation).join(Person, Person.id == Invitation.person_id)
                                        .where(Person.phone == "10000000001"))
            assert invitation is not None
            invitation.rsvp = "yes"
            invitation_id = invitation.id
        early = await post(web, f"{url}/attendance", {"present": str(invitation_id)}, form_page=url)
        assert early.status_code == 409
        clock.advance(days=6)  # type: ignore[attr-defined]
        assert (await web.get(url)).status_code == 303, "the morning's session has expired"
        await sign_in(web, coordinator)
        detail = await web.get(url)
        assert "登记出席" in detail.text
        marked = await post(web, f"{url}/attendance", {"present": str(invitation_id)}, form_page=url)
        assert marked.status_code == 303
        with county.db.session() as session:
            assert session.get(Invitation, invitation_id).attended is True  # type: ignore[union-attr]
            activity_id = session.scalar(select(Activity.id))
    assert audits(county, "attendance")
    other = Chat(county, "10000000102")  # 白云乡's coordinator
    async with client(county) as web:
        await sign_in(web, other)
        assert (await web.get(f"/console/activities/{activity_id}")).status_code == 404
        assert (await web.get(f"/console/activities/{activity_id}/counts")).status_code == 404
        assert "健康义诊" not in (await web.get("/console/activities")).text


# ------------------------------------------------------------------ reports


async def test_reports_show_charts_and_download_every_format_for_the_own_township(
        county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        page = await web.get("/console/reports", params={"period": "quarter", "township": "999"})
        assert page.status_code == 200
        assert "2026年第4季度" in page.text or "2026-Q4" in page.text
        assert page.text.count('src="data:image/png;base64,') >= 2
        assert "清溪镇" in page.text
        xlsx = await web.get("/console/reports/download/xlsx", params={"period": "2026-Q4"})
        assert xlsx.status_code == 200 and "说明" in load_workbook(BytesIO(xlsx.content)).sheetnames
        assert "filename*=UTF-8''report-" in xlsx.headers["content-disposition"]
        csv_zip = await web.get("/console/reports/download/csv", params={"period": "2026-Q4"})
        assert "00_说明.csv" in zipfile.ZipFile(BytesIO(csv_zip.content)).namelist()
        html = await web.get("/console/reports/download/html", params={"period": "2026-Q4"})
        assert html.text.startswith("<!DOCTYPE html>") and "清溪镇" in html.text
        bad = await web.get("/console/reports", params={"period": "soon"})
        assert bad.status_code == 400 and "没看懂这个期间" in bad.text
    assert {e.action for e in audits(county, "report")} == {"read", "export"}


async def test_an_admin_picks_a_township(county: App) -> None:
    with county.db.session() as session:
        baiyun = session.scalar(select(Township.id).where(Township.name == "白云乡"))
    async with client(county) as web:
        await sign_in(web, Chat(county, "10000000900"))
        page = await web.get("/console/reports", params={"period": "2026-Q4", "township": str(baiyun)})
        assert page.status_code == 200 and "白云乡" in page.text
        assert f"township={baiyun}" in page.text  # the downloads keep the choice
        assert (await web.get("/console/reports", params={"period": "2026", "township": "999"})).status_code == 404


# ------------------------------------------------------------------ delivery, audit, settings


def failed_messages(app: App) -> dict[str, int]:

    with app.db.session() as session:
        ids = {}
        for phone, township in (("10000000001", "清溪镇"), ("10000000003", "白云乡")):
            person = session.scalar(select(Person).where(Person.phone == phone))
            assert person is not None and session.get(Township, person.township_id).name == township  # type: ignore[union-attr]
            row = OutboxMessage(idempotency_key=f"test:{phone}", channel="telegram", address="1",
                                person_id=person.id, kind="reminder", payload={"text": "秘密内容", "options": []},
                                status="failed", attempts=8, last_error="forbidden: bot was blocked")
            session.add(row)
            session.flush()
            ids[township] = row.id
    return ids


async def test_delivery_lists_failures_in_scope_and_retry_or_cancel_changes_one_row(
        county: App, coordinator: Chat) -> None:

    ids = failed_messages(county)
    async with client(county) as web:
        await sign_in(web, coordinator)
        page = await web.get("/console/delivery")
        assert page.status_code == 200
        assert "bot was blocked" in page.text and "林晓燕" in page.text
        assert "马春兰" not in page.text, "another township's messages stay hidden"
        assert "秘密内容" not in page.text, "message text is never shown"
        other = await post(web, f"/console/delivery/{ids['白云乡']}/retry", form_page="/console/delivery")
        assert other.status_code == 404
        forged = await web.post(f"/console/delivery/{ids['清溪镇']}/retry", data={"csrf": "x"})
        assert forged.status_code == 403
        retried = await post(web, f"/console/delivery/{ids['清溪镇']}/retry", form_page="/console/delivery")
        assert retried.status_code == 303 and retried.headers["location"].endswith("retry=done")
        again = await post(web, f"/console/delivery/{ids['清溪镇']}/cancel", form_page="/console/delivery")
        assert again.headers["location"].endswith("cancel=not_failed")
        with county.db.session() as session:
            row = session.get(OutboxMessage, ids["清溪镇"])
            assert row is not None and (row.status, row.attempts) == ("queued", 0)
            assert session.get(OutboxMessage, ids["白云乡"]).status == "failed"  # type: ignore[union-attr]
    assert [e.detail for e in audits(county, "outbox")] == ["retry"]
    async with client(county) as web:
        await sign_in(web, Chat(county, "10000000900"))
        cancelled = await post(web, f"/console/delivery/{ids['白云乡']}/cancel", form_page="/console/delivery")
        assert cancelled.headers["location"].endswith("cancel=done")
    with county.db.session() as session:
        row = session.get(OutboxMessage, ids["白云乡"])
        assert row is not None and row.status == "expired" and "cancelled by" in (row.last_error or "")


async def test_audit_shows_who_read_what_within_scope(county: App, coordinator: Chat) -> None:
    other = Chat(county, "10000000102")
    async with client(county) as web:
        await sign_in(web, other)
        await web.get("/console/households/BY001")
    async with client(county) as web:
        await sign_in(web, coordinator)
        await web.get("/console/households/QX001")
        page = await web.get("/console/audit")
        assert page.status_code == 200
        assert "household_card" in page.text and "QX001" in page.text and "郑丽华" in page.text
        assert "BY001" not in page.text and "邓永强" not in page.text
        filtered = await web.get("/console/audit", params={"household": "QX002"})
        assert "household_card" not in filtered.text


async def test_settings_are_shown_read_only_with_secrets_masked(county: App, coordinator: Chat) -> None:
    async with client(county) as web:
        await sign_in(web, coordinator)
        page = await web.get("/console/settings")
        assert page.status_code == 200
        assert "systolic_high" in page.text and "180" in page.text and "[console]" in page.text
        assert "WARMLINE_DATA_KEY" in page.text and "dGVzdC1vbmx5" not in page.text
        assert "<form method=\"post\" action=\"/console/settings" not in page.text
        assert (await post(web, "/console/settings", form_page="/console/settings")).status_code == 405
