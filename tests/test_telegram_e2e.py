"""Telegram end to end: `warmline run` as a real process, the real python-telegram-bot, a fake
Bot API on 127.0.0.1, a real SQLite file.

One polling process serves the whole module (restarted once, on purpose); a second process runs
in webhook mode. Each test uses its own chats and people from the fictional demo county, so the
tests do not depend on one another's order.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import App, build_app
from bot.config import load_settings
from bot.demo import seed_demo
from dialogs.engine.context import new_token, payload_of
from dialogs.engine.dialog import action_value
from dialogs.engine.types import Option, Reply
from storage.invites import create_invite
from storage.models import (
    ActionToken,
    ChannelAddress,
    DialogSession,
    HealthReading,
    Household,
    InviteCode,
    OutboxMessage,
    OutboxStatus,
    Person,
    ProcessedInbound,
    Visit,
)
from tests.conftest import START, TEST_DATA_KEY
from tests.fakes.telegram_api import FakeBotAPI, TgUser, free_port, wait_until
from tests.process import Proc

WEBHOOK_SECRET = "s3cret-for_tests"
CONFIG = """
[delivery]
poll_interval_seconds = 0.2
base_delay_seconds = 0.3
[telegram]
poll_timeout_seconds = 5
webhook_max_body_bytes = 8192
"""


@dataclass
class World:
    """A seeded database file and the settings the test process uses to look into it."""

    url: str
    app: App
    config: Path

    def scalar(self, query: Any) -> Any:
        with self.app.db.session() as session:
            return session.scalar(query)

    def person(self, phone: str) -> Person:
        person = self.scalar(select(Person).where(Person.phone == phone))
        assert person is not None
        return person


def make_world(directory: Path, template_db: Path) -> World:
    path = directory / "warmline.db"
    shutil.copy(template_db, path)
    url = f"sqlite:///{path}"
    app = build_app(load_settings(db=url, env={"WARMLINE_DATA_KEY": TEST_DATA_KEY}))
    with app.db.session() as session:
        seed_demo(session, START)
    config = directory / "warmline.toml"
    config.write_text(CONFIG)
    return World(url, app, config)


class BotProcess:
    """`warmline run` against the fake API; start, kill -9, restart, stop gracefully."""

    def __init__(self, api: FakeBotAPI, world: World, **extra_env: str) -> None:
        self.api = api
        self.port = free_port()
        self.env = {
            "WARMLINE_TELEGRAM_TOKEN": api.token, "WARMLINE_TELEGRAM_BASE_URL": api.base_url,
            "WARMLINE_DATABASE_URL": world.url, "WARMLINE_DATA_KEY": TEST_DATA_KEY,
            "WARMLINE_CONFIG": str(world.config), "WARMLINE_HTTP_PORT": str(self.port),
            "WARMLINE_NOW": START.isoformat(), **extra_env,
        }
        self.proc: Proc | None = None

    def start(self, ready_method: str = "getUpdates") -> None:
        seen = len(self.api.calls_of(ready_method))
        self.proc = Proc(["-v", "run", "--no-scheduler"], env=self.env)
        wait_until(lambda: len(self.api.calls_of(ready_method)) > seen, 30,
                   lambda: f"warmline run did not reach {ready_method}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.proc.send_signal(signal.SIGTERM)
        return self.proc.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("telegram"), template_db)
    yield w
    w.app.db.dispose()


@pytest.fixture(scope="module")
def bot(api: FakeBotAPI, world: World) -> Iterator[BotProcess]:
    process = BotProcess(api, world)
    process.start()
    yield process
    try:
        assert process.stop() == 0, "warmline run should stop cleanly on SIGTERM"
    finally:
        if process.proc is not None and process.proc.proc.poll() is None:
            process.kill()


def linked(api: FakeBotAPI, chat_id: int, phone: str) -> TgUser:
    """A staff member who opened the bot and shared their own contact."""
    user = TgUser(api, chat_id)
    replies = user.share_contact(f"+86 {phone}")
    assert any("核对好你的手机号" in (m.get("text") or "") for m in replies), user.texts()
    return user


def text_of(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("text") or m.get("caption") or "") for m in messages)


def labels(message: dict[str, Any]) -> list[str]:
    return [b["text"] for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
            for b in row]


def answer_until_confirm(user: TgUser, first_label: str) -> list[dict[str, Any]]:
    """Tap `first_label`, then the first button of each following question, up to the summary."""
    replies = user.press(first_label)
    for _ in range(15):
        options = labels(replies[-1])
        if "保存" in options:
            return replies
        assert options, f"expected a question with buttons, got {text_of(replies)!r}"
        replies = user.press(options[0])
    raise AssertionError("the dialog never reached its confirm step")


# ------------------------------------------------------------------ polling mode


def test_deep_link_registers_an_imported_volunteer_in_one_tap(api: FakeBotAPI, world: World,
                                                               bot: BotProcess) -> None:
    ma = world.person("10000000003")
    with world.app.db.session() as session:
        code = create_invite(session, role="volunteer", now=START, ttl=timedelta(days=14),
                             township="白云乡", person_id=ma.id)
    user = TgUser(api, 5101, "春兰")
    replies = user.say(f"/start {code}")
    assert "请确认：马春兰，白云乡的志愿者" in text_of(replies)
    assert "request_contact" not in str(replies), "a good code needs no contact button"
    replies = user.press("确认")
    assert "注册好了" in text_of(replies)
    assert "✅ 确认" in text_of(user.messages()), "the pressed button's message shows the choice"
    address = world.scalar(select(ChannelAddress).where(
        ChannelAddress.channel == "telegram", ChannelAddress.address == "5101"))
    assert address is not None and address.person_id == ma.id
    invite = world.scalar(select(InviteCode).where(InviteCode.person_id == ma.id))
    assert invite.used_at is not None
    # the bot's username, learnt from getMe, is kept for printing deep links
    assert api.calls_of("getMe")


def test_newcomer_gets_a_contact_button_and_only_their_own_number_counts(
        api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    user = TgUser(api, 5102, "建国")
    replies = user.say("/start")
    assert "邀请码" in text_of(replies) and "分享我的手机号" in text_of(replies)
    keyboard = replies[-1]["reply_markup_sent"]["keyboard"]
    assert keyboard[0][0]["request_contact"] is True
    # somebody else's contact card (a forwarded one) must not log this chat in as that person
    replies = user.share_contact("+86 10000000002", user_id=999)
    assert "核对好你的手机号" not in text_of(replies) and "邀请码" in text_of(replies)
    assert world.scalar(select(ChannelAddress).where(ChannelAddress.address == "5102")) is None
    replies = user.share_contact("+86 100 0000 0002")
    assert "周建国，已经核对好你的手机号" in text_of(replies)
    assert replies[0]["reply_markup_sent"] == {"remove_keyboard": True}


def test_visit_report_by_buttons(api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    user = linked(api, 5201, "10000000001")
    menu = user.say("菜单")
    assert "走访记录" in str(menu[-1]["reply_markup"])
    replies = user.press("走访记录")
    assert "QX001" in str(replies[-1]["reply_markup"])
    summary = answer_until_confirm(user, "QX001")
    assert "请核对" in text_of(summary)
    # every answered question lost its keyboard and shows what was chosen
    answered = [m for m in user.messages()[:-1] if m.get("edited")]
    assert len(answered) >= 6 and all("✅" in m["text"] and "reply_markup" not in m for m in answered)
    before = world.scalar(select(func.count()).select_from(Visit).where(Visit.source == "dialog"))
    assert "已保存" in text_of(user.press("保存"))
    visit = world.scalar(select(Visit).where(Visit.source == "dialog").order_by(Visit.id.desc()))
    assert visit is not None and visit.visited_on.isoformat() == "2026-11-20"
    assert visit.volunteer_id == world.person("10000000001").id
    assert world.scalar(select(func.count()).select_from(Visit).where(Visit.source == "dialog")) == before + 1


def test_health_reading_typed_in_full_width_digits(api: FakeBotAPI, world: World,
                                                   bot: BotProcess) -> None:
    user = linked(api, 5202, "10000000002")
    user.say("健康数据")
    replies = user.press("QX004")
    assert "测了什么" in text_of(replies)
    replies = user.say("１３５／８５　７２")
    for _ in range(5):  # the advice question (and whatever else is left): "无"
        if "请核对" in text_of(replies):
            break
        replies = user.press("无") if "无" in labels(replies[-1]) else user.say("无")
    assert "135/85" in text_of(replies) and "72" in text_of(replies)
    user.press("保存")
    reading = world.scalar(select(HealthReading).order_by(HealthReading.id.desc()))
    assert reading is not None and (reading.systolic, reading.diastolic, reading.pulse) == (135, 85, 72)


def test_a_restart_mid_dialog_carries_on_at_the_same_question(api: FakeBotAPI, world: World,
                                                              bot: BotProcess) -> None:
    user = linked(api, 5301, "10000000004")
    user.say("走访记录")
    replies = user.press("CL001")
    question = replies[-1]
    assert question.get("reply_markup"), "expected the date question with buttons"
    bot.kill()  # SIGKILL: no shutdown code runs
    bot.start()
    # the button pressed after the restart answers the question asked before it
    choice = labels(question)[0]
    replies = user.press(choice, question)
    [shown] = [m for m in user.messages() if m["message_id"] == question["message_id"]]
    assert shown["text"].endswith(f"✅ {choice}") and "reply_markup" not in shown
    assert replies and replies[-1]["text"] != question["text"], "the question was not asked again"
    summary = answer_until_confirm(user, labels(replies[-1])[0])
    assert "请核对" in text_of(summary)
    user.press("保存")
    household_visits = world.scalar(select(func.count()).select_from(Visit).where(
        Visit.source == "dialog", Visit.volunteer_id == world.person("10000000004").id))
    assert household_visits == 1


def test_duplicate_update_is_processed_once(api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    user = linked(api, 5302, "10000000101")
    update = user.text_update("菜单")
    replies = user.send(update, dict(update))  # Telegram delivers the same update_id twice
    assert len([m for m in replies if "请选择" in (m.get("text") or "")]) == 1
    press = user.press_update("走访记录")
    replies = user.send(press, dict(press))
    assert len(replies) == 1 and "哪一户" in replies[0]["text"]


def test_forged_or_foreign_button_payloads_get_a_kind_reply_and_change_nothing(
        api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    owner = linked(api, 5401, "10000000001")
    owner.say("走访记录")
    other = linked(api, 5402, "10000000102")
    other.say("走访记录")
    foreign_token = TgUser.button("BY001", other.last_with_buttons())
    state_before = world.scalar(select(DialogSession.state).where(DialogSession.address == "5401"))
    visits_before = world.scalar(select(func.count()).select_from(Visit))
    for data in ("forged-0000", foreign_token, "x" * 64):
        replies = owner.send(owner.press_update(data=data))
        assert "这个按钮已经过期了" in text_of(replies)
        assert "哪一户" in text_of(replies), "the current question is shown again"
    assert world.scalar(select(func.count()).select_from(Visit)) == visits_before
    assert world.scalar(select(DialogSession.state).where(DialogSession.address == "5401")) == state_before
    # the other coordinator's question is untouched and still answerable
    replies = other.press("BY001")
    assert replies and "这个按钮已经过期了" not in text_of(replies) and labels(replies[-1])


def test_a_429_storm_delays_replies_but_loses_none(api: FakeBotAPI, world: World,
                                                   bot: BotProcess) -> None:
    users = [linked(api, 5501, "10000000001"), linked(api, 5502, "10000000102")]
    api.flood("sendMessage", times=4, retry_after=1)
    flood_start = time.monotonic()
    for user in users:
        user.send(user.text_update("菜单"))
    for user in users:
        user.wait_for("请选择", timeout=20)
    for user in users:
        menus = [m for m in user.messages() if "请选择" in (m.get("text") or "")]
        assert len(menus) == 1, "each reply arrives exactly once"
        delivered = [c for c in api.calls_of("sendMessage", user.chat_id)
                     if c.status == 200 and c.at > flood_start]
        assert delivered[0].at - flood_start >= 1.0, "retry_after was honoured"
    assert len([c for c in api.calls_of("sendMessage") if c.status == 429]) == 4

    def unsent() -> int:
        return world.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.channel == "telegram", OutboxMessage.status != "sent",
            OutboxMessage.address.in_(["5501", "5502"])))

    deadline = time.monotonic() + 15  # the worker records "sent" just after Telegram accepted it
    while unsent() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert unsent() == 0


def test_a_user_who_blocked_the_bot_is_marked_unreachable_and_the_coordinator_told(
        api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    coordinator = linked(api, 5601, "10000000101")
    coordinator.say("菜单")  # her most recent chat is where alerts go
    volunteer = linked(api, 5602, "10000000002")
    api.blocked.add(5602)
    volunteer.say("菜单")
    alert = coordinator.wait_for("联系不上", timeout=20)
    assert "周建国" in alert["text"]
    person = world.person("10000000002")
    assert person.unreachable_at is not None
    address = world.scalar(select(ChannelAddress).where(ChannelAddress.address == "5602"))
    assert address.blocked_at is not None
    assert any(c.status == 403 for c in api.calls_of("sendMessage", 5602))


# ------------------------------------------------- chats in parallel, each chat in order


def test_a_slow_chat_does_not_hold_another_and_one_chat_stays_in_order(
        api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    slow = linked(api, 5701, "10000000001")
    quick = linked(api, 5702, "10000000002")
    slow_before, quick_before = len(slow.messages()), len(quick.messages())
    api.slow("sendMessage", 5701, 2.0)  # this chat's replies take two seconds to go out
    try:
        first, second = slow.text_update("菜单"), slow.text_update("帮助")
        other = quick.text_update("菜单")
        started = time.monotonic()
        for update in (first, second, other):
            api.push(update)
        quick.wait_for("请选择", after=quick_before, timeout=10)
        assert time.monotonic() - started < 1.5, "the other chat waited for the slow one"
        assert slow.messages()[slow_before:] == [], "the slow chat's reply is still on its way"
        assert first["update_id"] in api.unconfirmed(), \
            "an update still being handled is not confirmed, though a later one is done"
        api.wait_handled(second["update_id"], timeout=20)
    finally:
        api.slow("sendMessage", 5701, 0)
    replies = slow.messages()[slow_before:]
    assert len(replies) == 2
    assert "请选择要做的事" in replies[0]["text"], "the first message was answered first"
    assert "回复选项前面的数字" in replies[1]["text"], "the second message was answered second"


def test_an_update_not_committed_at_a_crash_is_handled_once_after_the_restart(
        api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    user = linked(api, 5711, "10000000004")
    before = len(user.messages())
    update = user.text_update("菜单")
    holder = sqlite3.connect(world.url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the database: the step waits
        api.push(update)
        time.sleep(1.5)
        bot.kill()  # SIGKILL while the step waits to commit
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert user.messages()[before:] == []
    assert update["update_id"] in api.unconfirmed(), "the update was not confirmed before its commit"
    bot.start()
    api.wait_handled(update["update_id"], timeout=20)
    replies = user.messages()[before:]
    assert len(replies) == 1 and "请选择" in replies[0]["text"], replies
    assert world.scalar(select(func.count()).select_from(ProcessedInbound).where(
        ProcessedInbound.inbound_key == f"u{update['update_id']}")) == 1


def test_a_steps_several_texts_arrive_as_one_message(api: FakeBotAPI, world: World,
                                                      bot: BotProcess) -> None:
    user = linked(api, 5721, "10000000002")
    user.say("菜单")
    replies = user.say("今天天气不错")  # not understood: the kind words and the menu, together
    assert len(replies) == 1, [m.get("text") for m in replies]
    assert replies[0]["text"].startswith("没太明白你的意思。\n\n")
    assert "健康数据" in labels(replies[0]), "the menu's buttons are on that one message"


def push_button(world: World, chat_id: int, text: str, label: str, value: str) -> None:
    """A pushed message (as a digest is) with one button, queued for the delivery worker."""
    token = new_token()
    with world.app.db.session() as session:
        session.add(ActionToken(token=token, channel="telegram", address=str(chat_id),
                                action={"value": value}, created_at=START))
        session.add(OutboxMessage(
            idempotency_key=f"test-push:{token}", channel="telegram", address=str(chat_id),
            kind="digest", payload=payload_of(Reply(text, (Option(label, value),)), [token]),
            status=OutboxStatus.QUEUED, created_at=START, next_attempt_at=START))


def test_a_pushed_button_acts_once_and_a_second_press_is_stale(api: FakeBotAPI, world: World,
                                                                bot: BotProcess) -> None:
    user = linked(api, 5731, "10000000001")
    household = world.scalar(select(Household.id).where(Household.code == "QX001"))
    push_button(world, 5731, "今日提醒：QX001 该走访了", "记录走访",
                action_value("visit", household_id=household))
    pushed = user.wait_for("今日提醒", timeout=15)
    replies = user.press("记录走访", pushed)
    assert "这个按钮已经过期了" not in text_of(replies) and "哪天" in text_of(replies)
    again = user.send(user.press_update("记录走访", pushed))  # the same button, pressed again
    assert "这个按钮已经过期了" in text_of(again)
    assert "哪天" in text_of(again), "the question under way is shown again, not restarted"
    assert len(again) == 1, "the stale notice and the question come as one message"


# ------------------------------------------------------------------ webhook mode


@pytest.fixture(scope="module")
def webhook_api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def webhook_bot(webhook_api: FakeBotAPI, tmp_path_factory: pytest.TempPathFactory,
                template_db: Path) -> Iterator[tuple[BotProcess, World]]:
    world = make_world(tmp_path_factory.mktemp("telegram-webhook"), template_db)
    process = BotProcess(webhook_api, world, WARMLINE_TELEGRAM_MODE="webhook",
                         WARMLINE_TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
                         WARMLINE_TELEGRAM_WEBHOOK_URL="https://warmline.example/telegram")
    process.start(ready_method="setWebhook")
    wait_until(lambda: _healthy(process.port), 20)
    yield process, world
    try:
        assert process.stop() == 0
    finally:
        if process.proc is not None and process.proc.proc.poll() is None:
            process.kill()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _post(port: int, body: bytes | dict[str, Any], secret: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(f"http://127.0.0.1:{port}/telegram", headers=headers, timeout=10, **kwargs)


def test_webhook_is_registered_with_the_secret(webhook_api: FakeBotAPI,
                                               webhook_bot: tuple[BotProcess, World]) -> None:
    [call] = webhook_api.calls_of("setWebhook")
    assert call.params["url"] == "https://warmline.example/telegram"
    assert call.params["secret_token"] == WEBHOOK_SECRET
    assert not webhook_api.calls_of("getUpdates"), "webhook mode does not poll"


def test_webhook_with_the_right_secret_is_answered(webhook_api: FakeBotAPI,
                                                   webhook_bot: tuple[BotProcess, World]) -> None:
    process, _world = webhook_bot
    user = TgUser(webhook_api, 7001)
    update = user.text_update("/start")
    assert _post(process.port, update, WEBHOOK_SECRET).status_code == 200
    assert "邀请码" in user.texts()[-1]  # replied before the webhook call returned
    again = _post(process.port, update, WEBHOOK_SECRET)  # Telegram retries a slow webhook
    assert again.status_code == 200 and len(user.messages()) == 1


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", WEBHOOK_SECRET + "x"])
def test_webhook_with_a_wrong_or_missing_secret_is_refused(
        webhook_api: FakeBotAPI, webhook_bot: tuple[BotProcess, World], secret: str | None) -> None:
    process, world = webhook_bot
    user = TgUser(webhook_api, 7002)
    update = user.text_update("/start")
    response = _post(process.port, update, secret)
    assert response.status_code == 403
    time.sleep(0.2)
    assert user.messages() == []
    assert world.scalar(select(DialogSession).where(DialogSession.address == "7002")) is None


def test_webhook_refuses_malformed_and_oversized_bodies(webhook_api: FakeBotAPI,
                                                        webhook_bot: tuple[BotProcess, World]) -> None:
    process, _world = webhook_bot
    bad = _post(process.port, b'{"update_id": 1, "message": ', WEBHOOK_SECRET)
    assert bad.status_code == 400 and "Traceback" not in bad.text
    assert _post(process.port, b"[1, 2]", WEBHOOK_SECRET).status_code == 400
    huge = _post(process.port, b'{"update_id": 2, "pad": "' + b"x" * 10_000 + b'"}', WEBHOOK_SECRET)
    assert huge.status_code == 413
    assert _post(process.port, b"{}", "wrong").status_code == 403  # the secret is checked first
    assert _healthy(process.port)


def test_webhook_chats_in_parallel_and_one_chat_in_order(
        webhook_api: FakeBotAPI, webhook_bot: tuple[BotProcess, World]) -> None:
    """Telegram may post several updates at once; a slow chat holds neither the other chats'
    requests nor its own order."""
    from concurrent.futures import ThreadPoolExecutor

    process, _world = webhook_bot
    slow, quick = TgUser(webhook_api, 7101), TgUser(webhook_api, 7102)
    webhook_api.slow("sendMessage", 7101, 2.0)
    first, second = slow.text_update("/start"), slow.text_update("帮助")
    other = quick.text_update("/start")
    try:
        with ThreadPoolExecutor(3) as pool:
            started = time.monotonic()
            slow_first = pool.submit(_post, process.port, first, WEBHOOK_SECRET)
            time.sleep(0.2)  # the slow chat's second message arrives while its first is handled
            slow_second = pool.submit(_post, process.port, second, WEBHOOK_SECRET)
            quick_done = pool.submit(_post, process.port, other, WEBHOOK_SECRET)
            assert quick_done.result(timeout=10).status_code == 200
            assert time.monotonic() - started < 1.5, "the other chat waited for the slow one"
            assert quick.messages() and slow.messages() == []
            assert slow_first.result(timeout=20).status_code == 200
            assert slow_second.result(timeout=20).status_code == 200
    finally:
        webhook_api.slow("sendMessage", 7101, 0)
    replies = slow.messages()
    assert len(replies) == 2
    assert replies[0]["text"].startswith("你好，欢迎使用暖心"), replies[0]["text"]  # /start
    assert replies[1]["text"].startswith("请输入协调员发给你的邀请码"), "then the help, in order"
