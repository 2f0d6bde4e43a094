"""The visit report: a volunteer records a visit by numbers, typed dates and money, and checks it."""

from datetime import date

from sqlalchemy import func, select

from storage.models import AuditEntry, FollowUp, Visit
from tests.chat import Chat


def visits(chat: Chat) -> list[Visit]:
    with chat.app.db.session() as session:
        return list(session.scalars(select(Visit).where(Visit.source == "dialog")))


async def test_happy_path_by_numbers(volunteer: Chat) -> None:
    menu = await volunteer.say("菜单")
    assert "1. 走访记录" in menu
    assert "QX001" in await volunteer.say("1")
    assert "哪天" in await volunteer.say("1")
    assert "怎么联系" in await volunteer.say("1")
    assert "节日" in await volunteer.say("1")
    await volunteer.script("1", "1", "1")
    assert "送了钱" in await volunteer.say("老人腿脚不便，需要助行器")
    assert "跟进" in await volunteer.say("200 水果")
    summary = await volunteer.say("1")
    assert "日期：2026-11-20" in summary and "200 元 水果" in summary and "需要跟进：是" in summary
    assert visits(volunteer) == []  # nothing saved before confirming
    assert "已保存" in await volunteer.say("1")
    [visit] = visits(volunteer)
    assert visit.visited_on == date(2026, 11, 20)
    assert visit.kind == "home" and visit.money_fen == 20000 and visit.gifts == "水果"
    assert visit.needs == "老人腿脚不便，需要助行器"
    with volunteer.app.db.session() as session:
        follow = session.scalar(select(FollowUp))
        assert follow is not None and follow.household_id == visit.household_id
        assert follow.owner_id == visit.volunteer_id
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.entity == "visit")) == 1


async def test_typed_answers_and_labels_work_like_buttons(volunteer: Chat) -> None:
    await volunteer.say("走访记录")
    await volunteer.say("QX002 陈秀珍（桃园村）")
    await volunteer.say("１１月１８日")
    await volunteer.say("电话")
    await volunteer.script("平常问候", "一般", "低落", "无", "无")
    summary = await volunteer.say("否")
    assert "日期：2026-11-18" in summary and "方式：电话" in summary
    await volunteer.say("保存")
    [visit] = visits(volunteer)
    assert visit.kind == "phone" and visit.mood == "低落" and visit.money_fen == 0 and not visit.follow_up


async def test_invalid_inputs_are_asked_again_with_an_example(volunteer: Chat) -> None:
    await volunteer.script("走访记录", "1")
    reply = await volunteer.say("下个月")
    assert "没看懂这个日期" in reply and "11-20" in reply
    reply = await volunteer.say("2026-12-01")
    assert "还没到" in reply
    reply = await volunteer.say("2020-01-01")
    assert "超过一年" in reply
    await volunteer.say("昨天")
    reply = await volunteer.say("9")
    assert "回复选项前面的数字" in reply and "怎么联系" in reply
    await volunteer.script("2", "1", "1", "1", "无")
    reply = await volunteer.say("两百块")
    assert "没看懂金额" in reply
    await volunteer.script("0", "2")
    assert "已保存" in await volunteer.say("1")
    [visit] = visits(volunteer)
    assert visit.visited_on == date(2026, 11, 19)


async def test_change_one_answer_before_saving(volunteer: Chat) -> None:
    await volunteer.script("走访记录", "1", "1", "1", "1", "1", "1", "无", "无", "2")
    assert "要修改哪一项" in await volunteer.say("修改")
    assert "送了钱" in await volunteer.say("慰问金")
    summary = await volunteer.say("300")
    assert "300 元" in summary and "确认保存" in summary
    await volunteer.say("1")
    assert visits(volunteer)[0].money_fen == 30000


async def test_discard_saves_nothing(volunteer: Chat) -> None:
    await volunteer.script("走访记录", "1", "1", "1", "1", "1", "1", "无", "无", "2")
    assert "没有保存" in await volunteer.say("放弃")
    assert visits(volunteer) == []


async def test_a_volunteer_only_sees_their_own_households(volunteer: Chat) -> None:
    listing = await volunteer.say("走访记录")
    assert "QX001" in listing and "QX004" not in listing and "BY001" not in listing
    assert "请从列表里选一户" in await volunteer.say("QX004")


async def test_a_reminder_button_prefills_household_and_occasion(volunteer: Chat) -> None:
    from dialogs.engine.dialog import action_value
    from storage.models import ActionToken

    with volunteer.app.db.session() as session:
        session.add(ActionToken(token="digest-btn-1", channel="console", address=volunteer.address,
                                action={"value": action_value("visit", household_id=1, occasion="spring_festival")}))
    await volunteer.say("菜单")
    assert "哪天" in await volunteer.say(option_token="digest-btn-1")
    assert "怎么联系" in await volunteer.say("今天")
    assert "身体" in await volunteer.say("1")  # the occasion question is skipped
    await volunteer.script("1", "1", "无", "无")
    summary = await volunteer.say("2")
    assert "事由：春节" in summary and "QX001" in summary
