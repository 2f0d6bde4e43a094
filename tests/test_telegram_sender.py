"""The Telegram sender and update mapping, in process: the real PTB Bot against the fake Bot API.

What a message looks like on the phone (buttons carry only opaque tokens), what each Telegram
error means for the outbox row, and which updates count as a person's input.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, Update

from bot.channels.telegram import TelegramConfig, inbound_of
from bot.channels.telegram_http import AiohttpRequest
from bot.channels.telegram_sender import MAX_TEXT, TelegramSender
from bot.config import ConfigError, load_settings
from bot.delivery.base import SendRequest
from tests.fakes.telegram_api import FakeBotAPI, TgUser

CHAT = 4242


@pytest.fixture(scope="module")
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    yield server
    server.stop()


@pytest.fixture
async def sender(api: FakeBotAPI) -> AsyncIterator[TelegramSender]:
    bot = Bot(api.token, base_url=f"{api.base_url}/bot", base_file_url=f"{api.base_url}/file/bot",
              request=AiohttpRequest())  # the transport `warmline run` uses
    async with bot:
        yield TelegramSender(bot)


def request(payload: dict[str, Any], chat: int = CHAT) -> SendRequest:
    return SendRequest(1, "telegram", str(chat), "reply", payload)


async def test_options_become_one_button_per_row_carrying_only_the_token(
        api: FakeBotAPI, sender: TelegramSender) -> None:
    payload = {"text": "是怎么联系的？", "options": [{"label": "入户走访", "token": "tok-A1"},
                                                  {"label": "电话", "token": "tok-B2"}]}
    result = await sender.send(request(payload))
    assert result.ok and result.platform_message_id
    sent = api.calls_of("sendMessage", CHAT)[-1].params
    assert sent["text"] == "是怎么联系的？"
    assert sent["reply_markup"] == {"inline_keyboard": [
        [{"text": "入户走访", "callback_data": "tok-A1"}], [{"text": "电话", "callback_data": "tok-B2"}]]}


async def test_texts_with_form_characters_arrive_exactly_as_written(
        api: FakeBotAPI, sender: TelegramSender) -> None:
    """The transport encodes the form itself: &, =, +, %, line breaks and Chinese survive it."""
    text = "血压 135/85 & 心率=72 + 1%\n下次：周三 ?a=b#c"
    result = await sender.send(request({"text": text, "options": [{"label": "好 & 对", "token": "t+1=2"}]},
                                       chat=4343))
    assert result.ok
    message = api.delivered(4343)[-1]
    assert message["text"] == text
    assert message["reply_markup"]["inline_keyboard"] == [[{"text": "好 & 对", "callback_data": "t+1=2"}]]


async def test_options_without_tokens_are_written_as_numbered_lines(
        api: FakeBotAPI, sender: TelegramSender) -> None:
    payload = {"text": "请选择：", "options": [{"label": "是", "token": ""}, {"label": "否", "token": ""}]}
    assert (await sender.send(request(payload))).ok
    sent = api.calls_of("sendMessage", CHAT)[-1].params
    assert sent["text"] == "请选择：\n1. 是\n2. 否" and "reply_markup" not in sent


async def test_a_long_text_is_split_and_the_buttons_go_on_the_last_part(
        api: FakeBotAPI, sender: TelegramSender) -> None:
    lines = [f"第{i}户：王德福，桃园村，上次联系 11-{i % 28 + 1:02d}" for i in range(400)]
    payload = {"text": "\n".join(lines), "options": [{"label": "返回", "token": "tok-back"}]}
    before = len(api.calls_of("sendMessage", CHAT))
    assert (await sender.send(request(payload))).ok
    parts = [c.params for c in api.calls_of("sendMessage", CHAT)[before:]]
    assert len(parts) >= 2 and all(len(p["text"]) <= MAX_TEXT for p in parts)
    assert "\n".join(p["text"] for p in parts) == payload["text"]
    assert "reply_markup" not in parts[0] and parts[-1]["reply_markup"]["inline_keyboard"]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # raised inside PTB
async def test_429_holds_that_chat_and_bulk_for_telegrams_wait_but_not_other_replies(
        api: FakeBotAPI, sender: TelegramSender) -> None:
    api.flood("sendMessage", times=1, retry_after=3)
    result = await sender.send(request({"text": "你好"}))
    assert not result.ok and not result.permanent and result.retry_after == 3
    calls = len(api.calls_of("sendMessage"))

    again = await sender.send(request({"text": "第二条"}))
    bulk = await sender.send(SendRequest(2, "telegram", str(CHAT + 1), "broadcast", {"text": "通知"}))
    for held in (again, bulk):  # held by us, not refused by Telegram: no attempt is counted
        assert not held.ok and not held.permanent and not held.attempted
        assert 0 < (held.retry_after or 0) <= 3
    assert len(api.calls_of("sendMessage")) == calls, "no call to that chat, no bulk, while Telegram asked to wait"

    other = await sender.send(request({"text": "别人的回复"}, chat=CHAT + 1))
    assert other.ok, "another person's reply is not held behind the flood wait"


async def test_a_user_who_blocked_the_bot_is_unreachable(api: FakeBotAPI, sender: TelegramSender) -> None:
    api.blocked.add(CHAT + 2)
    result = await sender.send(request({"text": "你好"}, chat=CHAT + 2))
    assert result.permanent and result.unreachable and "blocked" in (result.error or "")


async def test_bad_requests_fail_for_good_and_network_trouble_is_retried(
        api: FakeBotAPI, sender: TelegramSender) -> None:
    api.fail("sendMessage", 400, "Bad Request: chat not found")
    result = await sender.send(request({"text": "你好"}))
    assert result.permanent and not result.unreachable and result.error == "chat_not_found"
    api.fail("sendMessage", 400, "Bad Request: message is too long")
    result = await sender.send(request({"text": "你好"}))
    assert result.permanent and "too long" in (result.error or "")
    api.fail("sendMessage", 502, "Bad Gateway")
    result = await sender.send(request({"text": "你好"}))
    assert not result.ok and not result.permanent
    assert (await sender.send(request({"text": "你好"}))).ok


async def test_charts_go_as_photos_and_files_as_documents(api: FakeBotAPI, sender: TelegramSender,
                                                           tmp_path: Path) -> None:
    chart = tmp_path / "bp.png"
    chart.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 2000)
    sheet = tmp_path / "report.xlsx"
    sheet.write_bytes(b"PK" + b"1" * 3000)
    photo = {"text": "近三个月血压", "options": [{"label": "返回", "token": "tok-r"}],
             "attachment": {"kind": "photo", "path": str(chart), "filename": None}}
    assert (await sender.send(request(photo))).ok
    call = api.calls_of("sendPhoto", CHAT)[-1]
    assert call.files["photo"] == chart.stat().st_size and call.params["caption"] == "近三个月血压"
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "tok-r"
    document = {"text": "11 月报表", "attachment": {"kind": "document", "path": str(sheet),
                                                     "filename": "2026-11.xlsx"}}
    assert (await sender.send(request(document))).ok
    assert api.calls_of("sendDocument", CHAT)[-1].files["document"] == sheet.stat().st_size
    gone = {"text": "x", "attachment": {"kind": "photo", "path": str(tmp_path / "gone.png")}}
    result = await sender.send(request(gone))
    assert result.permanent and result.error == "attachment_missing"


# ------------------------------------------------------------------ configuration


def config(**env: str) -> TelegramConfig | None:
    return TelegramConfig.from_settings(load_settings(db="sqlite:///unused.db", env=env))


def test_the_channel_is_off_without_a_token_and_polls_by_default() -> None:
    assert config() is None
    polling = config(WARMLINE_TELEGRAM_TOKEN="1:a")
    assert polling is not None and polling.mode == "polling"
    assert polling.base_url == "https://api.telegram.org"
    local = config(WARMLINE_TELEGRAM_TOKEN="1:a", WARMLINE_TELEGRAM_BASE_URL="http://10.0.0.5:8081/bot/")
    assert local is not None and local.base_url == "http://10.0.0.5:8081"


@pytest.mark.parametrize("env", [
    {"WARMLINE_TELEGRAM_MODE": "push"},
    {"WARMLINE_TELEGRAM_MODE": "webhook", "WARMLINE_TELEGRAM_WEBHOOK_URL": "https://x.example/telegram"},
    {"WARMLINE_TELEGRAM_MODE": "webhook", "WARMLINE_TELEGRAM_WEBHOOK_SECRET": "has space",
     "WARMLINE_TELEGRAM_WEBHOOK_URL": "https://x.example/telegram"},
    {"WARMLINE_TELEGRAM_MODE": "webhook", "WARMLINE_TELEGRAM_WEBHOOK_SECRET": "ok-secret"},
])
def test_a_webhook_without_secret_or_url_is_a_configuration_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        config(WARMLINE_TELEGRAM_TOKEN="1:a", **env)


# ---------------------------------------------------------------- update mapping


@pytest.fixture(scope="module")
def parser_bot(api: FakeBotAPI) -> Bot:
    return Bot(api.token, base_url=f"{api.base_url}/bot")


def parse(bot: Bot, data: dict[str, Any]) -> Update:
    return Update.de_json(data, bot)


def test_updates_map_to_what_the_person_did(api: FakeBotAPI, parser_bot: Bot) -> None:
    user = TgUser(api, 5150, "晓燕")
    start = inbound_of(parse(parser_bot, user.text_update("/start ABCD-EF23")))
    assert start is not None and start.start_payload == "ABCD-EF23" and start.address == "5150"
    assert start.message_id and start.message_id.startswith("u")
    cancel = inbound_of(parse(parser_bot, user.text_update("/cancel@warmline_test_bot")))
    assert cancel is not None and cancel.text == "/cancel"
    own = inbound_of(parse(parser_bot, user.contact_update("+8610000000001")))
    assert own is not None and own.contact_phone == "+8610000000001"
    forwarded = inbound_of(parse(parser_bot, user.contact_update("+8610000000002", user_id=77)))
    assert forwarded is not None and forwarded.contact_phone is None
    message = {"message_id": 9, "date": 0, "chat": {"id": 5150, "type": "private"}, "text": "问题",
               "reply_markup": {"inline_keyboard": [[{"text": "是", "callback_data": "tok-yes"}]]}}
    press = inbound_of(parse(parser_bot, user.press_update("是", message)))
    assert press is not None and press.option_token == "tok-yes" and press.text == ""


def test_group_chats_are_ignored(api: FakeBotAPI, parser_bot: Bot) -> None:
    update = TgUser(api, -100123).text_update("菜单")
    update["message"]["chat"]["type"] = "supergroup"
    assert inbound_of(parse(parser_bot, update)) is None



async def test_a_hung_or_refused_bot_api_is_retried_not_lost(api: FakeBotAPI) -> None:
    """The transport turns a read timeout and a refused connection into PTB's own errors, so a
    send to a slow or unreachable Bot API is a retry, not a crash or a lost message."""
    slow = Bot(api.token, base_url=f"{api.base_url}/bot", request=AiohttpRequest(read_timeout=0.3))
    api.slow("sendMessage", CHAT + 7, 2.0)
    try:
        async with slow:
            result = await TelegramSender(slow).send(request({"text": "你好"}, chat=CHAT + 7))
    finally:
        api.slow("sendMessage", CHAT + 7, 0)
    assert not result.ok and not result.permanent and (result.error or "").startswith("TimedOut")
    transport = AiohttpRequest()
    await transport.initialize()
    try:  # nothing listens on the discard port
        refused = Bot(api.token, base_url="http://127.0.0.1:9/bot", request=transport)
        result = await TelegramSender(refused).send(request({"text": "你好"}))
    finally:
        await transport.shutdown()
    assert not result.ok and not result.permanent and (result.error or "").startswith("NetworkError")


async def test_a_database_away_at_start_keeps_the_channel_trying_rather_than_never_polling(
        api: FakeBotAPI, caplog: pytest.LogCaptureFixture) -> None:
    """Starting, the channel checks the token and stores the bot's name; a database that does
    not answer yet is retried like a Bot API outage (it used to end the polling task quietly)."""
    from bot.app import build_app
    from bot.channels.telegram import from_app

    # a database file in a folder that is not there: every session fails, as a server not up yet
    settings = load_settings(db="sqlite:////nonexistent-warmline-folder/warmline.db", env={
        "WARMLINE_TELEGRAM_TOKEN": api.token, "WARMLINE_TELEGRAM_BASE_URL": api.base_url,
        "WARMLINE_DATA_KEY": "dGVzdC1vbmx5LWtleS1mb3Itd2FybWxpbmUtdGVzdHM="})
    channel = from_app(build_app(settings))
    assert channel is not None
    trying = asyncio.create_task(channel.connect())
    try:
        for _ in range(100):
            if "telegram connect failed" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert "telegram connect failed error=OperationalError" in caplog.text
        assert not trying.done(), "still trying, not given up"
    finally:
        trying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trying
        await channel.application.shutdown()
