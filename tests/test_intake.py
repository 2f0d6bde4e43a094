"""建档走访: the intake fills a household's file over several messages and days, and only a
confirmed intake becomes the file."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from bot.app import build_app
from bot.config import load_settings
from dialogs.engine.flood import FloodGuard
from dialogs.services import FixedClock
from storage.models import (
    AuditEntry,
    CaseFile,
    DeceasedChild,
    FollowUp,
    Household,
    IntakeDraft,
    Person,
)
from tests.chat import Chat
from tests.conftest import TEST_DATA_KEY
from tests.scripted import typing_faster_than_people  # noqa: F401 - a fixture

PARENT_ANSWERS = ["无"] * 6  # two parents × physical, psychological, hobbies


def case_file(chat: Chat, code: str = "QX001") -> CaseFile | None:
    with chat.app.db.session() as session:
        return session.scalar(select(CaseFile).join(Household).where(Household.code == code))


def drafts(chat: Chat) -> int:
    with chat.app.db.session() as session:
        return session.scalar(select(func.count()).select_from(IntakeDraft)) or 0


async def test_paused_intake_is_a_draft_and_resumes_in_a_new_process(
        volunteer: Chat, db_url: str, clock: FixedClock) -> None:
    assert "给哪一户建档" in await volunteer.say("建档")
    review = await volunteer.say("1")
    assert "王小军" in review and "交通事故" in review  # the child on record, to check with the family
    assert "经济保障" in await volunteer.say("1")
    assert "记下了" in await volunteer.say("困难")
    noted = await volunteer.say("靠低保，每月六百元，房子是老房子")
    assert "记下了" in noted and "下一项" in noted
    paused = await volunteer.say("暂停")
    assert "已暂停" in paused and "草稿" in paused
    assert case_file(volunteer) is None and drafts(volunteer) == 1

    # another day, another process on the same database file
    clock.advance(days=3)
    await volunteer.app.db.adispose()
    fresh = build_app(load_settings(db=db_url, env={"WARMLINE_DATA_KEY": TEST_DATA_KEY}), clock=clock)
    try:
        fresh.runner.flood = FloodGuard(max_messages=10_000)
        again = Chat(fresh, volunteer.address)
        listing = await again.say("建档")
        assert "QX001" in listing and "有未填完的草稿" in listing
        assert "林晓燕" in await again.say("1")  # who left the draft, and when
        resumed = await again.say("接着上次填")
        assert "经济保障" in resumed and "靠低保" in resumed  # the answer so far is shown
        await again.say("还有一块菜地")
        assert "王德福" in await again.say("下一项")
        for answer in PARENT_ANSWERS:
            await again.say(answer)
        await again.say("老伴腿脚不好，看病不方便")
        await again.say("下一项")
        await again.say("想要有人定期上门量血压")
        await again.say("下一项")
        await again.say("还没想好")
        assert "愿意志愿者上门" in await again.say("下一项")
        assert "多久联系一次" in await again.say("可以，但希望少打扰")
        summary = await again.say("一个月一次")
        assert "靠低保" in summary and "还有一块菜地" in summary and "一个月一次" in summary
        assert case_file(again) is None  # nothing is the file before confirming
        assert "建档完成" in await again.say("保存")

        saved = case_file(again)
        assert saved is not None
        assert saved.economic_security is not None
        assert "靠低保" in saved.economic_security and "还有一块菜地" in saved.economic_security
        assert saved.biggest_difficulty == "老伴腿脚不好，看病不方便"
        assert saved.accepts_visits == "paced"
        assert len(saved.member_notes) == 2
        assert drafts(again) == 0
        with fresh.db.session() as session:
            household = session.scalar(select(Household).where(Household.code == "QX001"))
            assert household is not None
            assert household.visit_preference == "paced" and household.visit_pace_days == 30
            need = session.scalar(select(FollowUp).where(FollowUp.source == "intake"))
            owner = session.scalar(select(Person).where(Person.phone == volunteer.address))
            assert need is not None and need.text == "想要有人定期上门量血压"
            assert owner is not None and need.owner_id == owner.id
            assert session.scalar(select(func.count()).select_from(AuditEntry)
                                  .where(AuditEntry.entity == "case_file")) == 1
        assert "QX001" not in await again.say("建档")  # a household with a file is not offered again
    finally:
        await fresh.db.adispose()


async def test_an_open_intake_waits_for_days_but_not_for_ever(volunteer: Chat, clock: FixedClock) -> None:
    await volunteer.script("建档", "2", "1")
    await volunteer.say("一般")
    clock.advance(days=10)  # far beyond the usual two hours
    assert "陈秀珍" in await volunteer.say("下一项")
    clock.advance(days=15)
    reply = await volunteer.say("身体还行")
    assert "很久没有继续" in reply
    assert case_file(volunteer, "QX002") is None


async def test_cancel_and_discard_save_nothing(volunteer: Chat) -> None:
    await volunteer.script("建档", "1", "1", "宽裕")
    assert "没有保存" in await volunteer.say("取消")
    assert case_file(volunteer) is None and drafts(volunteer) == 0
    await volunteer.script("建档", "1", "1", "下一项", *PARENT_ANSWERS, "无", "无", "无")
    await volunteer.say("欢迎，按平常节奏")
    assert "没有保存" in await volunteer.say("放弃")
    assert case_file(volunteer) is None


async def test_children_can_be_entered_again_with_full_dates(volunteer: Chat) -> None:
    await volunteer.script("建档", "1")
    assert "名字" in await volunteer.say("有误，重新填写")
    assert "出生日期" in await volunteer.say("王小君")
    assert "带年份" in await volunteer.say("5月1日")  # a birth date needs its year
    assert "去世的日期" in await volunteer.say("1980年5月1日")
    assert "早于出生日期" in await volunteer.say("1979-01-01")
    assert "原因" in await volunteer.say("2009-07-19")
    assert "还有别的孩子" in await volunteer.say("交通事故")
    assert "经济保障" in await volunteer.say("否")
    await volunteer.script("无", *PARENT_ANSWERS, "无", "无", "无", "欢迎，按平常节奏")
    assert "王小君" in volunteer.last["text"]
    await volunteer.say("保存")
    with volunteer.app.db.session() as session:
        [child] = session.scalars(select(DeceasedChild).join(Household).where(Household.code == "QX001"))
        assert child.name == "王小君" and child.birth_date == date(1980, 5, 1)
        assert child.death_date == date(2009, 7, 19) and child.death_cause == "交通事故"
        household = session.scalar(select(Household).where(Household.code == "QX001"))
        assert household is not None and household.visit_preference == "accepts"


async def test_another_townships_household_cannot_be_filed(volunteer: Chat) -> None:
    listing = await volunteer.say("建档")
    assert "QX001" in listing and "QX004" not in listing and "BY001" not in listing
    assert "请从列表里选一户" in await volunteer.say("BY001")
