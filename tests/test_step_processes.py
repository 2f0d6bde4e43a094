"""Telegram steps in several processes ([core] step_processes): `warmline run` as a real process
with its real helper process, the real python-telegram-bot, a fake Bot API on 127.0.0.1.

Helpers run on PostgreSQL only, so the tests that start them are skipped on SQLite (CI runs the
whole suite on both); on SQLite the setting must leave everything in the one process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from telegram import Update

from bot.app import build_app
from bot.channels.step_processes import (
    StepProcesses,
    owner,
    raw_chat_key,
    step_processes,
    steps_per_process,
)
from bot.channels.telegram import chat_key
from bot.config import load_settings
from bot.demo import seed_demo
from storage import outbox
from storage.models import OutboxMessage, OutboxStatus, ProcessedInbound
from tests.conftest import START, TEST_DATA_KEY
from tests.fakes.telegram_api import FakeBotAPI, TgUser, wait_until
from tests.test_telegram_e2e import (
    CONFIG,
    WEBHOOK_SECRET,
    BotProcess,
    World,
    _healthy,
    _post,
    linked,
    text_of,
)

ON_POSTGRES = bool(os.environ.get("WARMLINE_TEST_DATABASE_URL"))
needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="helper processes run on PostgreSQL only "
                                    "(set WARMLINE_TEST_DATABASE_URL; .ci/run does)")


class _Settings:
    def __init__(self, **core: Any) -> None:
        self.core = core

    def section(self, name: str) -> dict[str, Any]:
        return self.core if name == "core" else {}


# ------------------------------------------------------------------ sharing out, in-process


def _update(uid: int, **body: Any) -> dict[str, Any]:
    return {"update_id": uid, **body}


MESSAGE = {"message_id": 7, "date": 1764000000, "chat": {"id": 5123, "type": "private"},
           "from": {"id": 5123, "is_bot": False, "first_name": "王"}, "text": "菜单"}


@pytest.mark.parametrize("data", [
    _update(1, message=MESSAGE),
    _update(2, callback_query={"id": "q1", "from": MESSAGE["from"], "chat_instance": "c",
                               "data": "tok", "message": {**MESSAGE, "from": {"id": 1, "is_bot": True,
                                                                              "first_name": "暖心"}}}),
    _update(3, callback_query={"id": "q2", "from": MESSAGE["from"], "chat_instance": "c",
                               "inline_message_id": "im1", "data": "tok"}),
    _update(4, edited_message={**MESSAGE, "edit_date": 1764000100}),
])
def test_the_poller_keys_an_unparsed_update_as_the_step_that_parses_it(data: dict[str, Any]) -> None:
    """A chat's updates must all reach the same process, whether keyed raw or parsed."""
    assert raw_chat_key(data) == chat_key(Update.de_json(data, None))


def test_each_chat_belongs_to_one_process_and_the_chats_are_spread() -> None:
    keys = [str(5000 + i) for i in range(400)]
    first = [owner(k, 2) for k in keys]
    assert first == [owner(k, 2) for k in keys]
    assert 150 < first.count(1) < 250
    assert {owner(k, 3) for k in keys} == {0, 1, 2}


def test_how_many_processes_and_steps_each() -> None:
    pg, sqlite = "postgresql://warmline@db/warmline", "sqlite:///warmline.db"
    default = _Settings(max_concurrent_steps=32)
    auto = step_processes(default, pg)
    assert auto == min(2, len(os.sched_getaffinity(0)))
    assert steps_per_process(default, pg) == -(-32 // auto)
    assert step_processes(_Settings(step_processes=3), pg) == 3
    assert steps_per_process(_Settings(step_processes=3, max_concurrent_steps=32), pg) == 11
    assert step_processes(_Settings(step_processes=4), sqlite) == 1, "one SQLite file, one process"
    assert steps_per_process(_Settings(step_processes=4, max_concurrent_steps=32), sqlite) == 32


# ------------------------------------------------------------------ real processes


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def helper_pids(bot: BotProcess) -> list[int]:
    assert bot.proc is not None
    found = []
    for child in children(bot.proc.proc.pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"--step-process" in command:
            found.append(child)
    return found


def world_on(url: str, directory: Path, core: str) -> World:
    app = build_app(load_settings(db=url, env={"WARMLINE_DATA_KEY": TEST_DATA_KEY}))
    with app.db.session() as session:
        seed_demo(session, START)
    config = directory / "warmline.toml"
    config.write_text(CONFIG + "[core]\n" + core)
    return World(url, app, config)


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    yield server
    server.stop()


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = world_on(db_url, tmp_path, "step_processes = 2\n")
    yield w
    w.app.db.dispose()


@pytest.fixture
def bot(api: FakeBotAPI, world: World) -> Iterator[BotProcess]:
    process = BotProcess(api, world)
    try:
        try:
            process.start()
        except AssertionError:
            assert process.proc is not None
            raise AssertionError("start failed; output:\n" + process.proc.collected()) from None
        yield process
    finally:
        if process.proc is not None and process.proc.proc.poll() is None:
            process.kill()


def chats_of_each_process(count: int, start: int) -> tuple[list[int], list[int]]:
    """`count` chat ids run by the poller and `count` run by the helper."""
    here: list[int] = []
    there: list[int] = []
    chat = start
    while len(here) < count or len(there) < count:
        (there if owner(str(chat), 2) else here).append(chat)
        chat += 1
    return here[:count], there[:count]


def sending_by(world: World, chat: int) -> set[int]:
    """The pids of the processes sending the chat's replies right now (its claims, host:pid:random)."""
    with world.app.db.session() as session:
        found = session.scalars(select(OutboxMessage.claimed_by).where(
            OutboxMessage.address == str(chat), OutboxMessage.status == OutboxStatus.SENDING))
        return {int(claimer.split(":")[1]) for claimer in found if claimer}


@needs_postgres
def test_chats_are_shared_between_two_processes_each_chat_in_order(
        api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    helpers = helper_pids(bot)
    assert len(helpers) == 1, "step_processes = 2: the poller starts one helper"
    assert bot.proc is not None
    here, there = chats_of_each_process(2, 5801)
    phones = iter(["10000000001", "10000000002", "10000000003", "10000000004"])
    users = {chat: linked(api, chat, next(phones)) for chat in here + there}
    before = {chat: len(user.messages()) for chat, user in users.items()}
    pushed = []
    for user in users.values():  # each chat's two messages at once: the second must wait its turn
        pushed += [api.push(user.text_update("菜单")), api.push(user.text_update("帮助"))]
    for update in pushed:
        api.wait_handled(update["update_id"], timeout=20)
    for chat, user in users.items():
        replies = user.messages()[before[chat]:]
        assert len(replies) == 2, text_of(replies)
        assert "请选择要做的事" in replies[0]["text"], "the first message was answered first"
        assert "回复选项前面的数字" in replies[1]["text"], "the second message was answered second"
    # who answers whom: each reply held two seconds on its way, and its claim looked at meanwhile
    for chat in users:
        api.slow("sendMessage", chat, 2.0)
    try:
        held = [api.push(user.text_update("菜单")) for user in users.values()]
        wait_until(lambda: all(sending_by(world, chat) for chat in users), 10,
                   lambda: "every chat's reply should be on its way")
        pid_of = {chat: sending_by(world, chat) for chat in users}
    finally:
        for chat in users:
            api.slow("sendMessage", chat, 0)
    for update in held:
        api.wait_handled(update["update_id"], timeout=20)
    for chat in here:
        assert pid_of[chat] == {bot.proc.proc.pid}, "the poller's own chats are answered by it"
    for chat in there:
        assert pid_of[chat] == {helpers[0]}, "the helper's chats are answered by the helper"
    assert bot.stop() == 0
    wait_until(lambda: all(not Path(f"/proc/{pid}").exists() for pid in helpers), 10,
               lambda: "the helper outlived the poller's stop")


@needs_postgres
def test_a_helper_killed_before_its_step_committed_is_restarted_and_the_update_runs_once(
        api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    _here, there = chats_of_each_process(1, 5901)
    chat = there[0]
    user = linked(api, chat, "10000000001")
    before = len(user.messages())
    psycopg = pytest.importorskip("psycopg")  # the postgres extra; this test runs on PostgreSQL only
    (helper,) = helper_pids(bot)
    dsn = make_url(world.url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as holder:
        # the chat's session row locked elsewhere: its next step waits in the helper, uncommitted
        holder.execute("SELECT 1 FROM dialog_sessions WHERE channel = 'telegram' AND address = %s FOR UPDATE",
                       (str(chat),))
        update = api.push(user.text_update("菜单"))
        time.sleep(1.5)
        os.kill(helper, signal.SIGKILL)
        time.sleep(0.5)
        assert update["update_id"] in api.unconfirmed(), "not confirmed while its step had not committed"
        holder.rollback()
    api.wait_handled(update["update_id"], timeout=30)
    replies = user.messages()[before:]
    assert len(replies) == 1 and "请选择" in replies[0]["text"], replies
    assert world.scalar(select(ProcessedInbound.inbound_key).where(
        ProcessedInbound.inbound_key == f"u{update['update_id']}")) is not None
    (again,) = helper_pids(bot)
    assert again != helper, "a new helper took the dead one's place"
    later = api.push(user.text_update("帮助"))  # and it goes on answering that chat
    api.wait_handled(later["update_id"], timeout=20)
    assert "回复选项前面的数字" in user.messages()[-1]["text"]
    bot.kill()  # the poller itself dies: its helper sees the pipe close, and ends too
    wait_until(lambda: not Path(f"/proc/{again}").exists() or b"Z" in _state(again), 15,
               lambda: "the helper outlived its poller")


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return b"Z"


def queue_broadcast(world: World, chat: int, text: str) -> None:
    """A bulk message due now, as a coordinator's broadcast leaves it in the outbox."""
    async def enqueue() -> None:
        async with world.app.db.async_session() as session:
            await outbox.enqueue(session, kind="broadcast", recipient=outbox.Recipient("telegram", str(chat)),
                                 payload={"text": text, "options": []}, key=f"broadcast:{chat}", now=START)  # the bot's clock
        await world.app.db.adispose()

    asyncio.run(enqueue())


@needs_postgres
def test_a_429_met_by_a_helper_holds_off_the_main_processs_bulk_sends(
        api: FakeBotAPI, world: World, bot: BotProcess) -> None:
    """Bulk sends are the main process's (its delivery worker); Telegram's wait reaches it."""
    _here, there = chats_of_each_process(1, 6101)
    user = linked(api, there[0], "10000000001")
    api.fail("sendMessage", 429, "Too Many Requests: retry after 3", chat_id=there[0], retry_after=3)
    api.push(user.text_update("菜单"))
    wait_until(lambda: any(c.status == 429 for c in api.calls_of("sendMessage", there[0])), 10,
               lambda: "the helper's reply should have met the 429")
    refused_at = next(c.at for c in api.calls_of("sendMessage", there[0]) if c.status == 429)
    queue_broadcast(world, 6199, "下周三社区活动")
    wait_until(lambda: api.delivered(6199), 15, lambda: "the broadcast never went out")
    bulk_at = next(c.at for c in api.calls_of("sendMessage", 6199) if c.status == 200)
    assert bulk_at - refused_at >= 2.9, f"bulk went out {bulk_at - refused_at:.2f}s after a 3-second 429"
    wait_until(lambda: any("请选择" in (m.get("text") or "") for m in user.messages()), 10)
    reply_at = next(c.at for c in api.calls_of("sendMessage", there[0]) if c.status == 200 and c.at > refused_at)
    assert 2.9 <= reply_at - refused_at <= 5.0, "the reply waited out exactly its retry_after"
    assert bot.stop() == 0


@needs_postgres
def test_in_webhook_mode_a_helpers_chat_is_answered_before_its_webhook_call_returns(
        api: FakeBotAPI, world: World) -> None:
    bot = BotProcess(api, world, WARMLINE_TELEGRAM_MODE="webhook",
                     WARMLINE_TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
                     WARMLINE_TELEGRAM_WEBHOOK_URL="https://warmline.example/telegram")
    try:
        bot.start(ready_method="setWebhook")
        wait_until(lambda: _healthy(bot.port), 20)
        assert len(helper_pids(bot)) == 1
        here, there = chats_of_each_process(1, 6001)
        for chat in here + there:
            user = TgUser(api, chat)
            update = user.text_update("/start")
            assert _post(bot.port, update, WEBHOOK_SECRET).status_code == 200
            assert "邀请码" in user.texts()[-1], "replied before the webhook call returned"
            assert _post(bot.port, update, WEBHOOK_SECRET).status_code == 200  # Telegram's retry
            assert len(user.messages()) == 1, "a retried update is handled once"
        assert bot.stop() == 0
    finally:
        if bot.proc is not None and bot.proc.proc.poll() is None:
            bot.kill()


def test_on_sqlite_every_step_stays_in_the_one_process(api: FakeBotAPI, tmp_path: Path,
                                                       template_db: Path) -> None:
    import shutil

    path = tmp_path / "warmline.db"
    shutil.copy(template_db, path)
    world = world_on(f"sqlite:///{path}", tmp_path, "step_processes = 2\n")
    bot = BotProcess(api, world)
    bot.start()
    try:
        assert helper_pids(bot) == []
        user = linked(api, 5951, "10000000001")
        before = len(user.messages())
        api.wait_handled(api.push(user.text_update("菜单"))["update_id"], timeout=20)
        assert "请选择" in user.messages()[before:][0]["text"]
        assert bot.stop() == 0
    finally:
        if bot.proc is not None and bot.proc.proc.poll() is None:
            bot.kill()
        world.app.db.dispose()


# ------------------------------------------------------------------ the pipe, with stand-in helpers

# A stand-in for `warmline run --step-process`: says it is ready, then reports each update done.
# CRASH_ONCE: it dies at its second update the first time it runs (a marker file says so).
ECHO = """
import json, os, sys
crash = os.environ.get("CRASH_ONCE")
first_run = crash is not None and not os.path.exists(crash)
if first_run:
    open(crash, "w").close()
print("ready", flush=True)
for n, line in enumerate(sys.stdin):
    if first_run and n == 1:
        os._exit(9)
    print(json.loads(line)["update_id"], flush=True)
"""


def helper_key(count: int = 2) -> str:
    """A chat key the helper owns."""
    return next(str(chat) for chat in range(7000, 8000) if owner(str(chat), count) == 1)


async def test_a_helper_reports_each_update_done_and_the_poller_keeps_its_own_chats() -> None:
    here: list[int] = []
    done: list[int] = []
    shared = StepProcesses(2, [sys.executable, "-c", ECHO], lambda data, _f: here.append(data["update_id"]),
                           lambda _s: None)
    await shared.start()
    try:
        key = helper_key()
        mine = next(str(chat) for chat in range(7000, 8000) if owner(str(chat), 2) == 0)
        assert not shared.submit({"update_id": 1}, mine, lambda: None), "the poller's own chat runs here"
        for uid in (2, 3, 4):
            assert shared.submit({"update_id": uid, "message": {"text": "菜单"}}, key,
                                 lambda uid=uid: done.append(uid))
        for _ in range(200):
            if len(done) == 3:
                break
            await asyncio.sleep(0.01)
        assert done == [2, 3, 4]
    finally:
        await shared.close(1.0)
    assert here == []


async def test_a_helper_that_dies_is_started_again_and_given_its_unfinished_updates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done: list[int] = []
    monkeypatch.setenv("CRASH_ONCE", str(tmp_path / "crashed"))
    shared = StepProcesses(2, [sys.executable, "-c", ECHO], lambda _d, _f: None, lambda _s: None)
    await shared.start()
    try:
        first = shared.pids
        key = helper_key()
        for uid in (11, 12, 13):
            shared.submit({"update_id": uid}, key, lambda uid=uid: done.append(uid))
        for _ in range(500):
            if len(done) == 3:
                break
            await asyncio.sleep(0.01)
        assert sorted(done) == [11, 12, 13], "none lost; the dead helper's updates were given again"
        assert done.count(11) == 1, "one that was reported done is not finished twice"
        assert shared.pids and shared.pids != first, "a new helper took its place"
    finally:
        await shared.close(1.0)


async def test_a_helper_that_cannot_start_leaves_its_chats_to_the_poller() -> None:
    shared = StepProcesses(2, [sys.executable, "-c", "import sys; sys.exit(3)"],
                           lambda _data, finished: finished(), lambda _s: None)
    await shared.start()
    try:
        assert not shared.submit({"update_id": 21}, helper_key(), lambda: None), "it runs here now"
        assert shared.pids == []
    finally:
        await shared.close(1.0)


async def test_a_429_a_helper_met_reaches_the_poller() -> None:
    held: list[float] = []
    shared = StepProcesses(2, [sys.executable, "-c", "print('ready', flush=True); print('hold 2.5', flush=True)\n"
                               "import sys; sys.stdin.read()"], lambda _d, _f: None, held.append)
    await shared.start()
    try:
        for _ in range(200):
            if held:
                break
            await asyncio.sleep(0.01)
        assert held == [2.5]
    finally:
        await shared.close(1.0)


async def test_a_helper_that_dies_on_every_update_is_restarted_ever_more_slowly(tmp_path: Path) -> None:
    """An update that kills its process each time is given again, but not in a tight loop."""
    starts = tmp_path / "starts"
    dies = (f"open({str(starts)!r}, 'a').write('x'); print('ready', flush=True)\n"
            "import os, sys; sys.stdin.readline(); os._exit(9)")
    shared = StepProcesses(2, [sys.executable, "-c", dies], lambda _d, _f: None, lambda _s: None)
    await shared.start()
    try:
        shared.submit({"update_id": 31}, helper_key(), lambda: None)
        await asyncio.sleep(2.5)
        # restarted after 0.5 s, then 1 s, then 2 s: at most three starts in 2.5 s (every 0.5 s
        # it would be five)
        assert 2 <= len(starts.read_text()) <= 3, starts.read_text()
    finally:
        await shared.close(1.0)
