"""Refusals and requests: a declined visit paces the household down; a need becomes a follow-up
for the contact volunteer, escalated to the coordinator when nobody acts on it."""

from __future__ import annotations

from sqlalchemy import select

from bot.care.casework import escalate_follow_ups
from dialogs.services import FixedClock
from storage.models import FollowUp, Household, OutboxMessage, Person, Visit
from tests.chat import Chat
from tests.scripted import typing_faster_than_people  # noqa: F401 - a fixture


def household(chat: Chat, code: str) -> Household:
    with chat.app.db.session() as session:
        found = session.scalar(select(Household).where(Household.code == code))
        assert found is not None
        return found


async def escalate(chat: Chat, clock: FixedClock) -> int:
    async with chat.app.db.async_session() as session:
        return await escalate_follow_ups(session, clock.now(), chat.app.settings)


async def test_a_declined_visit_is_recorded_and_slows_the_rhythm(volunteer: Chat, clock: FixedClock) -> None:
    await volunteer.script("走访记录", "QX002", "今天")
    assert "家属婉拒了，是哪种联系方式" in await volunteer.say("家属婉拒")
    assert "节日" in await volunteer.say("电话")
    assert "家属有没有提到" in await volunteer.say("平常问候")  # no health or mood: nobody was met
    assert "跟进" in await volunteer.say("无")  # and no money question
    summary = await volunteer.say("否")
    assert "结果：家属婉拒" in summary and "身体：" not in summary and "慰问金" not in summary
    assert "每 30 天" in await volunteer.say("保存")
    with volunteer.app.db.session() as session:
        [visit] = session.scalars(select(Visit).where(Visit.source == "dialog"))
        assert visit.outcome == "declined" and visit.kind == "phone" and visit.mood is None
    first = household(volunteer, "QX002")
    assert first.visit_preference == "paced" and first.visit_pace_days == 30 and first.refused_at is not None

    clock.advance(days=31)
    await volunteer.script("走访记录", "QX002", "今天", "家属婉拒", "入户走访", "平常问候", "无", "否")
    assert "每 60 天" in await volunteer.say("保存")  # a second refusal: slower still
    assert household(volunteer, "QX002").visit_pace_days == 60


async def test_not_reached_is_recorded_without_pacing_down(volunteer: Chat) -> None:
    await volunteer.script("走访记录", "QX003", "今天", "没联系上", "电话", "平常问候", "无", "否")
    assert "已保存" in await volunteer.say("保存")
    with volunteer.app.db.session() as session:
        [visit] = session.scalars(select(Visit).where(Visit.source == "dialog"))
        assert visit.outcome == "not_reached"
    assert household(volunteer, "QX003").visit_preference == "accepts"


async def test_a_need_goes_to_the_contact_volunteer_then_the_coordinator(
        coordinator: Chat, clock: FixedClock) -> None:
    # the coordinator records a visit to QX004; its contact volunteer is 周建国, not the coordinator
    await coordinator.script("走访记录", "QX004", "今天", "入户走访", "平常问候", "一般", "低落",
                             "屋顶漏雨，想请人修一下", "无", "是", "保存")
    with coordinator.app.db.session() as session:
        need = session.scalar(select(FollowUp))
        owner = session.scalar(select(Person).where(Person.phone == "10000000002"))
        assert need is not None and owner is not None and need.owner_id == owner.id

    clock.advance(hours=71)
    assert await escalate(coordinator, clock) == 0  # not yet: 72 hours by default
    clock.advance(hours=2)
    assert await escalate(coordinator, clock) == 1
    assert await escalate(coordinator, clock) == 0  # once
    with coordinator.app.db.session() as session:
        me = session.scalar(select(Person).where(Person.phone == coordinator.address))
        [message] = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "escalation"))
        assert me is not None and message.person_id == me.id
        assert "屋顶漏雨" in message.payload["text"] and "周建国" in message.payload["text"]

    # the escalation's button opens the item; the coordinator marks it done
    reply = await coordinator.say(option_token=message.payload["options"][0]["token"])
    assert "屋顶漏雨" in reply and "已经转给乡镇协调员" in reply
    assert "办好" in await coordinator.say("已办好")
    with coordinator.app.db.session() as session:
        done = session.scalar(select(FollowUp))
        assert done is not None and done.status == "done" and done.acted_at is not None


async def test_a_volunteer_acting_in_time_stops_the_escalation(volunteer: Chat, clock: FixedClock) -> None:
    await volunteer.script("走访记录", "QX001", "今天", "电话", "平常问候", "一般", "平稳",
                           "想要一个助行器", "无", "是", "保存")
    listing = await volunteer.say("跟进事项")
    assert "QX001" in listing and "想要一个助行器" in listing
    await volunteer.say("1")
    assert "正在办理" in await volunteer.say("正在办")
    clock.advance(days=5)
    assert await escalate(volunteer, clock) == 0
    assert "正在办" in await volunteer.say("跟进事项")  # still open, marked in progress
    await volunteer.script("1", "已办好")
    assert "没有待跟进" in await volunteer.say("跟进事项")


async def test_other_volunteers_do_not_see_the_item(volunteer: Chat) -> None:
    await volunteer.script("走访记录", "QX001", "今天", "电话", "平常问候", "一般", "平稳",
                           "想要一个助行器", "无", "是", "保存")
    other = Chat(volunteer.app, "10000000003")
    assert "没有待跟进" in await other.say("跟进事项")
