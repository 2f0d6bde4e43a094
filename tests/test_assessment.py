"""评估: four anchored 1–5 scales and two notes, kept as a history and compared with the last one."""

from __future__ import annotations

from sqlalchemy import select

from dialogs.services import FixedClock
from storage.models import Assessment, FollowUp, OutboxMessage, Person
from tests.chat import Chat
from tests.scripted import typing_faster_than_people  # noqa: F401 - a fixture


def assessments(chat: Chat) -> list[Assessment]:
    with chat.app.db.session() as session:
        return list(session.scalars(select(Assessment).order_by(Assessment.id)))


async def assess(chat: Chat, who: str, scores: tuple[int, int, int, int], *notes: str) -> str:
    """Run one assessment of QX001 up to its confirm step; returns the summary."""
    await chat.say("评估")
    assert "评估哪一位" in await chat.say("QX001")
    reply = await chat.say(who)
    assert "创伤有多深" in reply and "能平静地谈起孩子" in reply  # every point has its anchor
    for score in scores:
        await chat.say(str(score))
    for note in notes or ("无", "无"):
        reply = await chat.say(note)
    return reply


async def test_assessments_are_kept_and_compared_with_the_previous_one(volunteer: Chat, clock: FixedClock) -> None:
    first = await assess(volunteer, "王德福", (4, 2, 3, 3), "夜里睡不好，常去墓地", "联系心理咨询师上门")
    assert "和上次" not in first and "创伤程度：4" in first
    assert assessments(volunteer) == []  # nothing before confirming
    assert "评估已保存" in await volunteer.say("保存")

    clock.advance(days=30)
    second = await assess(volunteer, "王德福", (3, 3, 3, 4))
    assert "和上次（2026-11-20）比" in second
    assert "创伤程度：4 → 3（好转）" in second  # less trauma is better
    assert "恢复程度：2 → 3（好转）" in second
    assert "接受程度：3 → 3（没有变化）" in second
    assert "对未来的态度：3 → 4（好转）" in second
    await volunteer.say("保存")

    older, newer = assessments(volunteer)
    assert (older.grief_trauma, older.healing, older.current_problems) == (4, 2, "夜里睡不好，常去墓地")
    assert (newer.grief_trauma, newer.healing, newer.future_attitude) == (3, 3, 4)
    assert older.member_id == newer.member_id is not None

    # the mother's first assessment is compared with nothing of the father's
    worse = await assess(volunteer, "李桂芳", (2, 4, 4, 4))
    assert "和上次" not in worse
    await volunteer.say("保存")

    card = await volunteer.script("/family", "QX001")
    assert "评估 王德福（2026-12-20），和 2026-11-20 比" in card
    assert "创伤程度：4 → 3（好转）" in card
    assert "评估 李桂芳（2026-12-20）" in card


async def test_a_score_must_be_one_to_five(volunteer: Chat) -> None:
    await volunteer.script("评估", "QX002")  # one parent: no question who
    reply = await volunteer.say("6")
    assert "1 到 5" in reply and "创伤有多深" in reply
    assert "恢复得怎么样" in await volunteer.say("２")  # a full-width digit is a digit


async def test_the_worst_end_alerts_the_coordinator_and_opens_a_follow_up(volunteer: Chat) -> None:
    summary = await assess(volunteer, "王德福", (5, 1, 1, 1))
    assert "专业干预" in summary
    assert "协调员" in await volunteer.say("保存")
    with volunteer.app.db.session() as session:
        coordinator = session.scalar(select(Person).where(Person.phone == "10000000101"))
        alert = session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "alert"))
        assert coordinator is not None and alert is not None and alert.person_id == coordinator.id
        assert "需要干预" in alert.payload["text"]
        follow = session.scalar(select(FollowUp).where(FollowUp.source == "assessment"))
        assert follow is not None and follow.status == "open"
