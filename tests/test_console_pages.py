"""The web console's pages and forms: status, scope, CSRF and audit rows, on the test database."""

from __future__ import annotations

from io import BytesIO

from openpyxl import load_workbook
from sqlalchemy import select

from bot.app import App
from storage.models import AuditEntry, Household
from tests.chat import Chat
from tests.console_web import client, post, sign_in


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
    from tests.console_web import csrf_of

    page = await web.get("/console/imports")  # type: ignore[attr-defined]
    return await web.post("/console/imports/preview", data={"csrf": csrf_of(page.text), "kind": kind},  # type: ignore[attr-defined]
                          files={"file": (name, text.encode("utf-8"), "text/csv")})


async def test_a_bad_row_is_highlighted_and_nothing_is_imported_until_the_file_is_clean(
        county: App, coordinator: Chat) -> None:
    from tests.console_web import csrf_of

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
