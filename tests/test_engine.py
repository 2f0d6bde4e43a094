"""The dialog engine's promises: global words, timeouts, durable resumption, one step = one transaction."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from bot.app import App, build_app
from bot.config import load_settings
from dialogs.engine.types import Inbound
from dialogs.services import FixedClock
from storage.models import DialogSession, HealthReading, OutboxMessage, Visit
from tests.chat import Chat
from tests.conftest import TEST_DATA_KEY


def count(chat: Chat, model: type) -> int:
    with chat.app.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


async def test_cancel_drops_the_draft_and_shows_the_menu(volunteer: Chat) -> None:
    await volunteer.script("走访记录", "1", "今天", "1")
    reply = await volunteer.say("取消")
    assert "已取消" in reply and "没有保存" in reply and "1. 走访记录" in reply
    with volunteer.app.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Visit).where(Visit.source == "dialog")) == 0
        row = session.scalar(select(DialogSession).where(DialogSession.address == volunteer.address))
        assert row is not None and row.dialog is None


async def test_cancel_in_english_and_with_full_width_slash(volunteer: Chat) -> None:
    await volunteer.script("/visit", "1")
    assert "已取消" in await volunteer.say("/cancel")
    await volunteer.script("/visit", "1")
    assert "已取消" in await volunteer.say("／ｃａｎｃｅｌ")


async def test_help_explains_the_current_question_and_keeps_the_place(volunteer: Chat) -> None:
    await volunteer.script("走访记录", "1")
    reply = await volunteer.say("帮助")
    assert "11-20" in reply and "哪天" in reply
    assert "怎么联系" in await volunteer.say("今天")


async def test_menu_leaves_the_dialog_and_says_nothing_was_saved(volunteer: Chat) -> None:
    await volunteer.script("走访记录", "1")
    reply = await volunteer.say("菜单")
    assert "没有保存" in reply and "1. 走访记录" in reply


async def test_idle_timeout_cancels_without_saving(volunteer: Chat, clock: FixedClock) -> None:
    await volunteer.script("走访记录", "1", "今天")
    clock.advance(hours=3)
    reply = await volunteer.say("1")
    assert "超时" in reply or "很久没有继续" in reply
    assert "1. 走访记录" in reply  # back at the menu: "1" was not taken as an answer
    with volunteer.app.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Visit).where(Visit.source == "dialog")) == 0


async def test_within_the_timeout_the_dialog_carries_on(volunteer: Chat, clock: FixedClock) -> None:
    await volunteer.script("走访记录", "1", "今天")
    clock.advance(minutes=100)
    assert "节日" in await volunteer.say("1")


async def test_a_new_process_resumes_at_the_same_question(volunteer: Chat, db_url: str, clock: FixedClock) -> None:
    await volunteer.script("走访记录", "1", "今天", "2")
    await volunteer.app.db.adispose()
    fresh = build_app(load_settings(db=db_url, env={"WARMLINE_DATA_KEY": TEST_DATA_KEY}), clock=clock)
    try:
        pending = await fresh.runner.pending_prompt("console", volunteer.address)
        assert pending is not None and "节日" in pending.text
        again = Chat(fresh, volunteer.address)
        await again.script("1", "1", "1", "无", "无")
        summary = await again.say("2")
        assert "方式：电话" in summary and "日期：2026-11-20" in summary
        await again.say("1")
        with fresh.db.session() as session:
            assert session.scalar(select(func.count()).select_from(Visit).where(Visit.source == "dialog")) == 1
    finally:
        await fresh.db.adispose()


async def test_a_forged_button_reaches_nothing(volunteer: Chat) -> None:
    await volunteer.say("走访记录")
    reply = await volunteer.say(option_token="forged-token-123")
    assert "按钮已经过期" in reply and "哪一户" in reply


async def test_a_button_pressed_twice_counts_once(volunteer: Chat) -> None:
    await volunteer.say("走访记录")
    token = volunteer.token_for("QX001")
    assert "哪天" in await volunteer.say(option_token=token)
    reply = await volunteer.say(option_token=token)
    assert "按钮已经过期" in reply and "哪天" in reply


async def test_another_persons_token_is_refused(volunteer: Chat, county) -> None:  # type: ignore[no-untyped-def]
    await volunteer.say("走访记录")
    token = volunteer.token_for("QX001")
    other = Chat(county, "10000000003")  # a volunteer of another township
    await other.say("菜单")
    reply = await other.say(option_token=token)
    assert "按钮已经过期" in reply
    assert "QX001" not in reply


async def test_a_platform_retry_is_processed_once(volunteer: Chat, caplog: pytest.LogCaptureFixture) -> None:
    await volunteer.say("走访记录")
    first = await volunteer.send("1", message_id="m-1")
    with caplog.at_level(logging.INFO):
        again = await volunteer.send("1", message_id="m-1")
    assert first and again == []
    assert "duplicate inbound dropped" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], \
        "a retry already handled is not a fault: nothing to warn about"
    assert "怎么联系" in str(await volunteer.send("今天"))


async def test_roles_are_checked_by_the_runner(county) -> None:  # type: ignore[no-untyped-def]
    from storage.models import ChannelAddress, Person

    with county.db.session() as session:
        parent = session.scalar(select(Person).where(Person.role == "family"))
        session.add(ChannelAddress(person_id=parent.id, channel="console", address="parent-1"))
    family = Chat(county, "parent-1")
    reply = await family.say("走访记录")
    assert "哪一户" not in reply and "QX00" not in reply
    with county.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DialogSession).where(
            DialogSession.address == "parent-1", DialogSession.dialog.is_not(None))) == 0


async def test_a_failing_step_saves_nothing_and_apologises(volunteer: Chat, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dialogs.health_reading import HealthReadingDialog

    await volunteer.script("健康数据", "1", "1", "135/85 72", "无")

    async def broken_alert(*_args: object, **_kw: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(HealthReadingDialog, "save", broken_alert)
    reply = await volunteer.say("保存")
    assert "没有保存成功" in reply
    assert count(volunteer, HealthReading) == 0
    monkeypatch.undo()
    # the session was not advanced either: the same confirmation is still waiting
    assert "已保存" in await volunteer.say("保存")
    assert count(volunteer, HealthReading) == 1


async def test_every_reply_is_an_outbox_row_marked_sent(volunteer: Chat) -> None:
    await volunteer.script("菜单", "1")
    with volunteer.app.db.session() as session:
        rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reply")))
    assert len(rows) == 2 and all(r.status == "sent" for r in rows)


async def test_newcomer_is_asked_for_an_invite_code(county) -> None:  # type: ignore[no-untyped-def]
    stranger = Chat(county, "someone-new")
    reply = await stranger.say("你好")
    assert "邀请码" in reply


async def test_handles_empty_and_huge_messages(volunteer: Chat) -> None:
    await volunteer.script("走访记录", "1", "今天", "1", "1", "1", "1")
    reply = await volunteer.say("很" * 100_000)
    assert "太长" in reply
    outgoing = await volunteer.app.runner.handle(Inbound("console", volunteer.address, text=""))
    assert outgoing


async def test_a_flooding_sender_is_slowed_politely(volunteer: Chat) -> None:
    replies = [await volunteer.say(str(i % 3 + 1)) for i in range(30)]
    slowed = [r for r in replies if "稍等" in r]
    silent = [r for r in replies if r == ""]
    assert len(slowed) == 1  # told once, not thirty times
    assert len(silent) == 30 - 20 - 1
    other = Chat(volunteer.app, "10000000002")
    assert "周建国" in await other.say("菜单")  # other senders are not held back


async def test_a_number_answers_the_latest_pushed_message(volunteer: Chat, clock: FixedClock) -> None:
    """On channels without buttons, '1' after a digest picks the digest's first option."""
    from dialogs.engine.context import queue_message
    from dialogs.engine.dialog import action_value
    from dialogs.engine.types import Option, Reply
    from storage.models import Person

    await volunteer.say("菜单")
    clock.advance(minutes=5)
    person = volunteer.person()
    assert isinstance(person, Person)
    async with volunteer.app.db.async_session() as session:
        row = await queue_message(session, person_id=person.id, kind="digest", key="digest:test", now=clock.now(),
                                  reply=Reply("今天要做：", (Option("QX003 健康服务", action_value("reading", household_id=3)),)))
        assert row is not None
        row.status, row.sent_at = "sent", clock.now()
    clock.advance(minutes=1)
    reply = await volunteer.say("1")
    assert "给哪位老人测的" in reply and "赵国庆" in reply  # reading dialog, household already chosen


async def test_many_chats_stepping_at_once_reuse_the_database_connections(app: App) -> None:
    """Strangers in eighty chats write at once, as many steps at a time as the default bound
    allows: every one is answered, and the second wave opens no new database connection (a
    new PostgreSQL connection is a new server process; the pool must hold what the steps use)."""
    import asyncio

    from sqlalchemy import event

    from bot.channels.dispatch import KeyedDispatcher

    dispatcher = KeyedDispatcher()  # the default bound, as the channels use it
    opened = [0]

    def count(*_args: object) -> None:
        opened[0] += 1

    async def wave(start: int) -> list[int]:
        jobs = [dispatcher.submit(f"chat-{n}", lambda n=n: app.runner.handle(
            Inbound("console", f"chat-{n}", text="你好", message_id=f"m{start}-{n}")))
            for n in range(start, start + 80)]
        return [len(await job) for job in jobs]

    assert min(await wave(0)) >= 1
    event.listen(app.db.async_engine.sync_engine, "connect", count)
    try:
        assert min(await wave(100)) >= 1
    finally:
        event.remove(app.db.async_engine.sync_engine, "connect", count)
    await asyncio.sleep(0)
    assert opened[0] == 0


async def test_postgresql_plans_the_steps_statements_once_per_connection(app: App) -> None:
    """On PostgreSQL the statements every message runs are prepared on the server after a few
    uses (planned once per connection, not per message); `off` turns that off for an old
    transaction-pooling PgBouncer, and a wrong value is refused with the variable's name."""
    import pytest
    from sqlalchemy import text

    from storage.db import PREPARE_ENV, prepare_threshold

    assert prepare_threshold({PREPARE_ENV: "off"}) is None
    assert prepare_threshold({}) == 5
    with pytest.raises(ValueError, match=PREPARE_ENV):
        prepare_threshold({PREPARE_ENV: "sometimes"})
    if app.db.async_engine.dialect.name != "postgresql":
        pytest.skip("server-side prepared statements are PostgreSQL's")
    for n in range(8):  # one chat, one step after another: one pooled connection
        await app.runner.handle(Inbound("console", "chat-p", text="你好", message_id=f"p{n}"))
    async with app.db.async_session() as session:
        prepared = await session.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
    assert prepared and prepared >= 3


def address_row(chat: Chat) -> tuple[object, str | None]:
    from storage.models import ChannelAddress

    with chat.app.db.session() as session:
        row = session.scalars(select(ChannelAddress).where(ChannelAddress.channel == chat.channel,
                                                          ChannelAddress.address == chat.address)).one()
        return row.last_inbound_at, row.display_name


async def test_the_address_remembers_when_it_was_used_and_the_name_it_first_showed(
        volunteer: Chat, clock: FixedClock) -> None:
    """Replies and alerts go to the address a person wrote from last (and WeChat's 48-hour window
    counts from it); the console shows the name the platform first gave the address."""
    await volunteer._link()
    clock.advance(hours=2)
    assert "1. 走访记录" in await volunteer.say("菜单", display_name="王阿姨")  # the first message
    assert address_row(volunteer) == (clock.now(), "王阿姨")
    clock.advance(minutes=5)
    await volunteer.say("菜单", display_name="改了名字")  # a later one: the time moves on, the name stays
    assert address_row(volunteer) == (clock.now(), "王阿姨")
    written = clock.now()
    clock.advance(seconds=20)
    await volunteer.say("菜单")  # within the minute: not rewritten
    assert address_row(volunteer) == (written, "王阿姨")
