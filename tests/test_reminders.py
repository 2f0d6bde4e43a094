"""The morning digest and the overdue escalation land in the outbox once, and their buttons work."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time

import pytest
from sqlalchemy import func, select, update

from bot.app import App
from bot.care.reminders import plan_reminders
from bot.care.scheduler import run_scheduler
from bot.cli import main
from dialogs.services import FixedClock
from storage.models import ContactAssignment, Household, OutboxMessage, Person
from tests.chat import Chat
from tests.conftest import SHANGHAI, TEST_DATA_KEY


@pytest.fixture(autouse=True)
def _data_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI commands read the data key from the environment, as in production."""
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)


def at(day: date, hour: int = 9, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


def digests(app: App) -> dict[str, OutboxMessage]:
    with app.db.session() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder"))
        return {row.idempotency_key: row for row in rows}


def person_id(app: App, phone: str) -> int:
    with app.db.session() as session:
        pid = session.scalar(select(Person.id).where(Person.phone == phone))
        assert pid is not None
        return pid


async def test_one_digest_per_person_per_morning(county: App) -> None:
    monday = date(2026, 11, 23)
    assert (await plan_reminders(county, at(monday, 7, 59))).digests == 0  # before 08:00
    assert digests(county) == {}
    first = await plan_reminders(county, at(monday, 8, 0))
    assert first.digests > 0
    again = await plan_reminders(county, at(monday, 15, 30))
    assert again.digests == 0 and again.skipped_existing == first.digests
    rows = digests(county)
    assert len(rows) == first.digests
    volunteer = person_id(county, "10000000001")
    row = rows[f"digest:{volunteer}:2026-11-23"]
    assert row.expires_at == at(date(2026, 11, 24), 8)  # stale once the next digest is due
    tuesday = await plan_reminders(county, at(date(2026, 11, 24), 8, 5))
    assert tuesday.digests == first.digests
    assert f"digest:{volunteer}:2026-11-24" in digests(county)


async def test_a_volunteers_digest_lists_only_their_families_with_buttons(volunteer: Chat) -> None:
    app = volunteer.app
    await volunteer.say("菜单")  # the volunteer has a console address now
    await plan_reminders(app, at(date(2026, 11, 27)))
    row = digests(app)[f"digest:{person_id(app, '10000000001')}:2026-11-27"]
    assert (row.channel, row.address) == ("console", "10000000001")
    text = row.payload["text"]
    assert "QX001" in text and "QX002" in text and "QX003" in text
    assert "QX004" not in text and "BY001" not in text
    assert "生日探访·陈秀珍" in text and "已逾期 5 天" in text
    assert text.count("QX002 陈秀珍（桃园村） · 每周问候") == 1  # last week's and this week's: one call
    labels = [o["label"] for o in row.payload["options"]]
    assert "记录 QX002 生日探访·陈秀珍" in labels and "记健康数据 QX001" in labels
    # The button starts the visit report with the family already chosen.
    token = next(o["token"] for o in row.payload["options"] if o["label"] == "记录 QX002 每周问候")
    reply = "\n".join(p["text"] for p in await volunteer.send(option_token=token))
    assert "哪天" in reply and "请从列表里选一户" not in reply


async def test_overdue_tasks_escalate_to_the_township_coordinator_once(county: App) -> None:
    coordinator = person_id(county, "10000000101")  # 清溪镇
    other = person_id(county, "10000000102")  # 白云乡
    await plan_reminders(county, at(date(2026, 11, 24)))  # QX002's week is 2 days overdue
    early = digests(county)[f"digest:{coordinator}:2026-11-24"].payload["text"]
    assert "QX002" not in early
    await plan_reminders(county, at(date(2026, 11, 25)))  # 3 days: escalated
    rows = digests(county)
    text = rows[f"digest:{coordinator}:2026-11-25"].payload["text"]
    assert "QX002 陈秀珍（桃园村） · 每周问候 · 已逾期 3 天（联系志愿者：林晓燕）" in text
    assert "BY001" not in text and "QX001" not in text  # QX001 was called on time
    assert "BY001" in rows[f"digest:{other}:2026-11-25"].payload["text"]
    assert (await plan_reminders(county, at(date(2026, 11, 25), 18))).digests == 0
    with county.db.session() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.idempotency_key == f"digest:{coordinator}:2026-11-25")) == 1


async def test_families_without_a_contact_volunteer_go_to_the_coordinator(county: App) -> None:
    with county.db.session() as session:
        qx004 = session.scalar(select(Household.id).where(Household.code == "QX004"))
        session.execute(update(ContactAssignment).where(ContactAssignment.household_id == qx004)
                        .values(ended_on=date(2026, 11, 21)))
    await plan_reminders(county, at(date(2026, 11, 23)))
    rows = digests(county)
    text = rows[f"digest:{person_id(county, '10000000101')}:2026-11-23"].payload["text"]
    assert "QX004 刘长顺（石桥村） · 建档走访" in text and "还没有联系志愿者" in text
    assert f"digest:{person_id(county, '10000000002')}:2026-11-23" not in rows  # QX004 was his only family


async def test_a_township_without_a_coordinator_reports_to_the_county_admin(county: App) -> None:
    await plan_reminders(county, at(date(2026, 11, 27)))
    admin_text = digests(county)[f"digest:{person_id(county, '10000000900')}:2026-11-27"].payload["text"]
    assert "CL001" in admin_text and "长乐镇" in admin_text  # 长乐镇 has no coordinator


def test_schedule_command_twice_plans_nothing_twice(county: App, capsys: pytest.CaptureFixture[str]) -> None:
    url = county.settings.database_url
    assert main(["--db", url, "schedule", "--at", "2026-11-27T08:30"]) == 0
    first = capsys.readouterr().out
    count = len(digests(county))
    assert count > 0 and f"reminders: {count} " in first
    assert main(["--db", url, "schedule", "--at", "2026-11-27T10:00"]) == 0
    assert "reminders: 0 " in capsys.readouterr().out
    assert len(digests(county)) == count


async def test_the_scheduler_plans_on_the_app_clock_until_stopped(county: App, clock: FixedClock) -> None:
    clock.set(at(date(2026, 11, 30), 8, 1))
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(county, {}, stop))
    for _ in range(200):
        if digests(county):
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert any(key.endswith(":2026-11-30") for key in digests(county))
