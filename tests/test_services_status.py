"""服务与保障: statuses and dates per member; an insurance about to run out becomes a task."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select

from bot.care.casework import plan_service_expiry
from dialogs.services import FixedClock
from storage.models import AuditEntry, Person, ServiceEntitlement, Task
from tests.chat import Chat
from tests.conftest import SHANGHAI
from tests.scripted import typing_faster_than_people  # noqa: F401 - a fixture


def entitlements(chat: Chat) -> list[ServiceEntitlement]:
    with chat.app.db.session() as session:
        return list(session.scalars(select(ServiceEntitlement).order_by(ServiceEntitlement.id)))


def tasks(chat: Chat) -> list[Task]:
    with chat.app.db.session() as session:
        return list(session.scalars(select(Task).order_by(Task.id)))


async def set_insurance(chat: Chat, expires: str, *, member: str = "王德福", service: str = "意外伤害保险") -> str:
    await chat.say("服务")
    assert "更新谁的服务" in await chat.say("QX001")
    listing = await chat.say(member)
    assert "意外伤害保险 · " in listing and "家庭医生签约" in listing
    assert "现在是什么状态" in await chat.say(service)
    assert "从哪天开始" in await chat.say("在享受/有效")
    assert "哪天到期" in await chat.say("跳过")
    summary = await chat.say(expires)
    assert f"到期日期：{expires}" in summary
    return await chat.say("保存")


async def daily_job(chat: Chat, at: datetime) -> int:
    async with chat.app.db.async_session() as session:
        return await plan_service_expiry(session, at, chat.app.settings)


async def test_saving_an_insurance_that_expires_soon_makes_one_renewal_task(volunteer: Chat, clock: FixedClock) -> None:
    saved = await set_insurance(volunteer, "2026-12-10")  # 20 days ahead; the window is 30
    assert "已保存" in saved and "续保提醒" in saved and "还要更新别的吗" in saved
    [row] = entitlements(volunteer)
    assert (row.service, row.status, row.expires_on) == ("accident_insurance", "active", date(2026, 12, 10))
    [task] = tasks(volunteer)
    with volunteer.app.db.session() as session:
        me = session.scalar(select(Person).where(Person.phone == volunteer.address))
        assert me is not None and task.assignee_id == me.id
        assert session.scalar(select(AuditEntry).where(AuditEntry.entity == "service")) is not None
    assert task.kind == "insurance_renewal" and task.done_at is None and "2026-12-10" in (task.reason or "")
    assert await daily_job(volunteer, clock.now()) == 0  # the job finds the task already there
    assert len(tasks(volunteer)) == 1

    # renewed for a year: the reminder closes itself and no new one is made yet
    await volunteer.say("完成")
    await set_insurance(volunteer, "2027-12-10")
    [task] = tasks(volunteer)
    assert task.done_at is not None
    assert len(entitlements(volunteer)) == 1  # the same entitlement, updated


async def test_the_daily_job_makes_the_task_when_the_expiry_comes_near(volunteer: Chat, clock: FixedClock) -> None:
    saved = await set_insurance(volunteer, "2027-06-30")
    assert "续保提醒" not in saved and tasks(volunteer) == []
    assert await daily_job(volunteer, datetime(2027, 5, 20, 6, 0, tzinfo=SHANGHAI)) == 0
    assert await daily_job(volunteer, datetime(2027, 6, 1, 6, 0, tzinfo=SHANGHAI)) == 1
    assert await daily_job(volunteer, datetime(2027, 6, 2, 6, 0, tzinfo=SHANGHAI)) == 0  # once only
    [task] = tasks(volunteer)
    assert task.due_at.astimezone(SHANGHAI).date() == date(2027, 6, 29)


async def test_services_that_are_not_insurance_make_no_task(volunteer: Chat) -> None:
    await set_insurance(volunteer, "2026-12-01", service="家庭医生签约")
    assert tasks(volunteer) == []


async def test_statuses_and_dates_are_checked_and_shown_on_the_card(volunteer: Chat) -> None:
    await volunteer.script("服务", "QX001", "李桂芳", "免费体检")
    assert "哪天申请" in await volunteer.say("已申请")
    assert "没看懂这个日期" in await volunteer.say("上周")
    assert "还没到" in await volunteer.say("2026-12-01")
    summary = await volunteer.say("11-18")
    assert "申请日期：2026-11-18" in summary
    await volunteer.say("保存")
    await volunteer.script("同一人的其他服务", "住院护理补贴保险", "在享受/有效", "跳过")
    assert "带年份" in await volunteer.say("12-31")  # an expiry must say its year
    await volunteer.script("长期有效", "保存", "完成")
    card = await volunteer.script("/family", "QX001")
    assert "李桂芳免费体检：已申请，2026-11-18 申请" not in card  # the card keeps it short
    assert "李桂芳免费体检：已申请" in card and "李桂芳住院护理补贴保险：在享受/有效" in card
