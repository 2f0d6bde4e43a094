"""/family: one household's card — for its own volunteer and its township's coordinator only."""

from __future__ import annotations

from sqlalchemy import func, select

from dialogs.engine.dialog import action_value
from dialogs.services import FixedClock
from storage.models import ActionToken, AuditEntry, Household, Person
from tests.chat import Chat
from tests.scripted import typing_faster_than_people  # noqa: F401 - a fixture


def household_id(chat: Chat, code: str) -> int:
    with chat.app.db.session() as session:
        found = session.scalar(select(Household.id).where(Household.code == code))
        assert found is not None
        return found


def card_reads(chat: Chat, code: str, phone: str) -> int:
    with chat.app.db.session() as session:
        return session.scalar(
            select(func.count()).select_from(AuditEntry)
            .join(Person, Person.id == AuditEntry.actor_id)
            .where(AuditEntry.entity == "household_card", AuditEntry.household_id == household_id(chat, code),
                   Person.phone == phone)) or 0


async def forged_button(chat: Chat, code: str) -> str:
    """A button for someone else's household, as if forwarded or guessed, bound to this address."""
    await chat.say("菜单")
    with chat.app.db.session() as session:
        session.add(ActionToken(token="forwarded-card", channel=chat.channel, address=chat.address,
                                action={"value": action_value("families", household_id=household_id(chat, code))}))
    return await chat.say(option_token="forwarded-card")


async def test_the_volunteer_sees_a_short_card_of_their_own_household(volunteer: Chat, clock: FixedClock) -> None:
    await volunteer.script("健康数据", "QX001", "王德福", "140/90", "无", "保存")
    clock.advance(days=2)
    await volunteer.script("健康数据", "QX001", "王德福", "155/95 血糖7.1", "空腹", "无", "保存")
    await volunteer.script("走访记录", "QX001", "今天", "入户走访", "平常问候", "一般", "平稳",
                           "想要一个助行器", "无", "是", "保存")
    listing = await volunteer.say("/family")
    assert "QX001" in listing and "QX004" not in listing
    card = await volunteer.say("QX001")
    assert "· 王德福（父亲）74 岁" in card and "· 李桂芳（母亲）72 岁" in card
    assert "上次电话/微信：2026-11-17" in card  # the demo's phone call
    assert "上次入户：2026-11-22（0 天前）" in card
    assert "血压 王德福 155/95（11-22） ↑ 比上次高（140/90）" in card
    assert "血糖 王德福 7.1（11-22）" in card
    assert "待跟进 1 条" in card and "想要一个助行器" in card
    assert "服务与保障：还没有记录" in card
    assert "接下来要做" in card  # the planner's next tasks
    assert "王小军" not in card and "交通事故" not in card  # the child's details stay in the file
    options = [o["label"] for o in volunteer.last["options"]]
    assert options[:2] == ["走访记录", "健康数据"] and "评估" in options and "建档走访" in options
    assert card_reads(volunteer, "QX001", volunteer.address) == 1


async def test_another_townships_volunteer_cannot_open_the_card(volunteer: Chat) -> None:
    other = Chat(volunteer.app, "10000000003")  # 马春兰, 白云乡
    listing = await other.say("/family")
    assert "BY001" in listing and "QX001" not in listing
    assert "请从列表里选一户" in await other.say("QX001")
    reply = await forged_button(other, "QX001")
    assert "王德福" not in reply and "BY001" in reply  # their own list instead
    assert card_reads(other, "QX001", "10000000003") == 0


async def test_a_coordinator_sees_any_household_of_their_township_only(coordinator: Chat) -> None:
    listing = await coordinator.say("/family")
    assert "QX001" in listing and "QX004" in listing and "BY001" not in listing
    assert "刘长顺" in await coordinator.say("QX004")  # not their own family, but their township's
    assert card_reads(coordinator, "QX004", coordinator.address) == 1

    elsewhere = Chat(coordinator.app, "10000000102")  # 邓永强, 白云乡's coordinator
    assert "QX001" not in await elsewhere.say("/family")
    reply = await forged_button(elsewhere, "QX001")
    assert "王德福" not in reply
    assert card_reads(elsewhere, "QX001", "10000000102") == 0

