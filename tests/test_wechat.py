"""The Official Account channel, end to end: signed and encrypted posts to the live HTTP app,
wechatpy's real client sending to a fake WeChat API on 127.0.0.1, records in a real database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from wechatpy.crypto import WeChatCrypto

from bot.app import App
from bot.channels import wechat
from bot.channels.wechat import OfficialAccountChannel
from bot.config import ConfigError
from bot.delivery.base import SendRequest
from dialogs.engine import catalog
from storage.models import (
    AuditEntry,
    ChannelAddress,
    Consent,
    DialogSession,
    Lease,
    OutboxMessage,
    OutboxStatus,
    Person,
    Preference,
    ProcessedInbound,
    Task,
)
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.wechat_side import Poster, event_xml, live_http, message_xml, sign, text_xml

APPID = "wx7a3c0f0e1d2b4c5d"
TOKEN = "warmline-oa-token"
AES_KEY = "XlXRbM7L8L5u+Qp4/AwFPiPE/D2lqw30etEV2qhcseU"
VOLUNTEER_OPENID = "oVolunteer0000000000000000001"
FAMILY_OPENID = "oFamily000000000000000000001"
NEWCOMER_OPENID = "oNewcomer00000000000000000001"

# WeChat's published sample for safe mode (the official WXBizMsgCrypt demo).
SAMPLE = {
    "appid": "wx2c2769f8efd9abc2", "token": "spamtest",
    "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "timestamp": "1409735669", "nonce": "1320562132",
    "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
    "openid": "oyORnuP8q7ou2gfYjqLzSIWZf0rs", "msg_id": "6054768590064713728",
    "body": "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>",
}

TEMPLATES = {"default": {"template_id": "TPL-DEFAULT", "max_chars": 20,
                         "fields": {"thing1": "{title}", "time2": "{date}"}},
             "greeting_mid_autumn": {"template_id": "TPL-MID-AUTUMN", "max_chars": 20,
                                     "fields": {"thing1": "{title}", "thing2": "{volunteer}"}}}


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture
def wechat_api() -> Iterator[FakeWeChatAPI]:
    api = FakeWeChatAPI().start()
    yield api
    api.close()


def configure(app: App, api: FakeWeChatAPI, *, appid: str = APPID, token: str = TOKEN,
              aes_key: str | None = AES_KEY, templates: dict | None = None) -> OfficialAccountChannel:
    app.settings.env.update({"WARMLINE_WECHAT_APPID": appid, "WARMLINE_WECHAT_SECRET": "oa-secret",
                             "WARMLINE_WECHAT_TOKEN": token, "WARMLINE_WECHAT_API_BASE": api.base})
    if aes_key:
        app.settings.env["WARMLINE_WECHAT_AES_KEY"] = aes_key
    app.settings.raw.setdefault("wechat", {})["templates"] = templates if templates is not None else {}
    channel = wechat.from_app(app)
    assert channel is not None
    return channel


@pytest.fixture
def oa(county: App, wechat_api: FakeWeChatAPI) -> OfficialAccountChannel:
    return configure(county, wechat_api)


@pytest.fixture
async def post(oa: OfficialAccountChannel) -> AsyncIterator[Poster]:
    async with live_http(oa.routes()) as client:
        yield Poster(client, "/wechat", TOKEN, WeChatCrypto(TOKEN, AES_KEY, APPID))
        await oa.stop()


def person_id(app: App, *, phone: str | None = None, name: str | None = None) -> int:
    with app.db.session() as session:
        query = select(Person.id).where(Person.phone == phone) if phone else select(Person.id).where(Person.name == name)
        found = session.scalar(query)
    assert found is not None
    return found


def link(app: App, openid: str, pid: int, *, last_inbound_hours_ago: float | None = 1.0) -> None:
    now = app.services.now()
    with app.db.session() as session:
        session.add(ChannelAddress(person_id=pid, channel="wechat", address=openid, created_at=now,
                                   last_inbound_at=None if last_inbound_hours_ago is None
                                   else now - timedelta(hours=last_inbound_hours_ago)))


def count(app: App, model: type, *where: object) -> int:
    with app.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def family_request(app: App, text: str, *, kind: str = "greeting", **payload: object) -> SendRequest:
    return SendRequest(outbox_id=4242, channel="wechat", address=FAMILY_OPENID, kind=kind,
                       payload={"text": text, "options": [], **payload},
                       person_id=person_id(app, name="王德福"))


# ---------------------------------------------------------------------------- configuration

def test_channel_runs_only_when_configured(county: App, wechat_api: FakeWeChatAPI) -> None:
    assert wechat.from_app(county) is None
    county.settings.env["WARMLINE_WECHAT_APPID"] = APPID
    with pytest.raises(ConfigError, match="WARMLINE_WECHAT_SECRET"):
        wechat.from_app(county)
    county.settings.env.update({"WARMLINE_WECHAT_SECRET": "s", "WARMLINE_WECHAT_TOKEN": "t",
                                "WARMLINE_WECHAT_AES_KEY": "too-short"})
    with pytest.raises(ConfigError, match="AES_KEY"):
        wechat.from_app(county)


# ---------------------------------------------------------------------------- inbound

async def test_url_check_echoes_only_a_correct_signature(post: Poster) -> None:
    ok = await post.client.get("/wechat", params={"signature": sign(TOKEN, "1795000001", "99"),
                                                  "timestamp": "1795000001", "nonce": "99",
                                                  "echostr": "8172639"})
    assert ok.status_code == 200 and ok.text == "8172639"
    bad = await post.client.get("/wechat", params={"signature": sign("other", "1795000001", "99"),
                                                   "timestamp": "1795000001", "nonce": "99",
                                                   "echostr": "8172639"})
    assert bad.status_code == 403 and "8172639" not in bad.text
    missing = await post.client.get("/wechat", params={"echostr": "8172639"})
    assert missing.status_code == 403


async def test_published_safe_mode_sample_is_decrypted_and_answered_encrypted(
        county: App, wechat_api: FakeWeChatAPI) -> None:
    channel = configure(county, wechat_api, appid=SAMPLE["appid"], token=SAMPLE["token"],
                        aes_key=SAMPLE["aes_key"])
    crypto = WeChatCrypto(SAMPLE["token"], SAMPLE["aes_key"], SAMPLE["appid"])
    channel.wall_clock = lambda: float(SAMPLE["timestamp"])  # the sample was signed in 2014
    async with live_http(channel.routes()) as client:
        response = await client.post("/wechat", content=SAMPLE["body"].encode(), params={
            "timestamp": SAMPLE["timestamp"], "nonce": SAMPLE["nonce"], "encrypt_type": "aes",
            "msg_signature": SAMPLE["msg_signature"],
            "signature": sign(SAMPLE["token"], SAMPLE["timestamp"], SAMPLE["nonce"])})
        assert response.status_code == 200
        reply = Poster(client, "/wechat", SAMPLE["token"], crypto).open_reply(response)
    assert "<Encrypt>" in response.text and "abcdteT" not in response.text
    assert reply["ToUserName"] == SAMPLE["openid"] and reply["FromUserName"] == "gh_10f6c3c3ac5a"
    # a stranger is asked for an invite code
    assert catalog.t("register.ask_code") in reply["Content"]
    assert count(county, ProcessedInbound, ProcessedInbound.inbound_key == SAMPLE["msg_id"]) == 1


async def test_plain_text_gets_numbered_options_and_typed_numbers_answer_them(
        county: App, oa: OfficialAccountChannel, post: Poster) -> None:
    link(county, VOLUNTEER_OPENID, person_id(county, phone="10000000001"))
    response = await post.encrypted(text_xml(VOLUNTEER_OPENID, "菜单", 5001))
    reply = post.open_reply(response)
    assert reply["MsgType"] == "text" and reply["ToUserName"] == VOLUNTEER_OPENID
    assert "1. 走访记录" in reply["Content"]
    second = post.open_reply(await post.encrypted(text_xml(VOLUNTEER_OPENID, "1", 5002)))
    assert "QX001" in second["Content"] and "QX004" not in second["Content"]
    # replies answered in the HTTP response are recorded as sent, nothing left claimed
    await oa.pump.drain()
    assert count(county, OutboxMessage, OutboxMessage.address == VOLUNTEER_OPENID,
                 OutboxMessage.status != OutboxStatus.SENT) == 0
    assert count(county, OutboxMessage, OutboxMessage.address == VOLUNTEER_OPENID) >= 2


async def test_safe_mode_message_gets_an_encrypted_passive_reply(county: App, post: Poster) -> None:
    link(county, VOLUNTEER_OPENID, person_id(county, phone="10000000001"))
    response = await post.encrypted(text_xml(VOLUNTEER_OPENID, "菜单", 6001))
    assert response.status_code == 200 and "<Encrypt>" in response.text and "走访" not in response.text
    assert "1. 走访记录" in post.open_reply(response)["Content"]


@pytest.mark.parametrize("forgery", ["plain mode under an AES key", "no signature", "wrong msg_signature",
                                     "aes without msg_signature"])
async def test_forged_posts_get_403_and_are_not_processed(county: App, post: Poster, forgery: str) -> None:
    xml = text_xml(NEWCOMER_OPENID, "你好", 7001)
    if forgery == "plain mode under an AES key":  # correctly signed, but the signature skips the body
        response = await post.plain(xml)
    elif forgery == "no signature":
        response = await post.client.post("/wechat", params={"timestamp": "1", "nonce": "2"}, content=xml)
    elif forgery == "wrong msg_signature":
        response = await post.encrypted(xml, msg_signature="0" * 40)
    else:
        response = await post.encrypted(xml, msg_signature="")
    assert response.status_code == 403
    assert count(county, ProcessedInbound, ProcessedInbound.channel == "wechat") == 0
    assert count(county, DialogSession) == 0
    assert count(county, OutboxMessage) == 0


async def test_oversized_and_malformed_bodies_are_refused_plainly(county: App, post: Poster) -> None:
    huge = text_xml(NEWCOMER_OPENID, "字" * 40000, 7101)
    assert (await post.encrypted(huge)).status_code == 413
    broken = await post.encrypted("<xml><FromUserName>oX</From")
    assert broken.status_code == 400 and "Traceback" not in broken.text and len(broken.text) < 40
    entity = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
              + text_xml(NEWCOMER_OPENID, "&a;", 7102))
    assert (await post.encrypted(entity)).status_code == 400
    no_type = await post.encrypted(f"<xml><FromUserName>{NEWCOMER_OPENID}</FromUserName></xml>")
    assert no_type.status_code == 400
    assert count(county, ProcessedInbound) == 0


async def test_wechat_retries_of_one_message_are_processed_once(county: App, post: Poster) -> None:
    link(county, VOLUNTEER_OPENID, person_id(county, phone="10000000001"))
    xml = text_xml(VOLUNTEER_OPENID, "菜单", 8001)
    first = await post.encrypted(xml)
    assert "走访记录" in post.open_reply(first)["Content"]
    replies = count(county, OutboxMessage, OutboxMessage.address == VOLUNTEER_OPENID)
    for _ in range(2):  # WeChat's second and third tries get the step's reply again, not nothing
        again = await post.encrypted(xml)
        assert post.open_reply(again)["Content"] == post.open_reply(first)["Content"]
    assert count(county, OutboxMessage, OutboxMessage.address == VOLUNTEER_OPENID) == replies
    assert count(county, ProcessedInbound, ProcessedInbound.inbound_key == "8001") == 1


def _hold_write_lock(app: App) -> sqlite3.Connection | None:
    url = make_url(app.db.url)
    if url.get_backend_name() != "sqlite":
        return None
    conn = sqlite3.connect(str(url.database), timeout=5, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_a_slow_step_answers_success_then_sends_a_customer_service_message(
        county: App, oa: OfficialAccountChannel, post: Poster, wechat_api: FakeWeChatAPI) -> None:
    link(county, VOLUNTEER_OPENID, person_id(county, phone="10000000001"))
    oa.pump.budget = 0.3
    lock = _hold_write_lock(county)  # another writer holds the database: the step must wait
    if lock is None:
        oa.pump.budget = 0.0
    started = time.monotonic()
    response = await post.encrypted(text_xml(VOLUNTEER_OPENID, "菜单", 9001))
    elapsed = time.monotonic() - started
    assert response.text == "success" and elapsed < 2.0
    assert wechat_api.sent("message/custom/send") == []
    await asyncio.sleep(0.2)
    if lock is not None:
        lock.execute("ROLLBACK")
        lock.close()
    await oa.pump.drain()
    [call] = wechat_api.sent("message/custom/send")
    assert call.body["touser"] == VOLUNTEER_OPENID and call.body["msgtype"] == "text"
    assert "1. 走访记录" in call.body["text"]["content"]
    with county.db.session() as session:
        statuses = set(session.scalars(select(OutboxMessage.status).where(
            OutboxMessage.address == VOLUNTEER_OPENID)))
    assert statuses == {OutboxStatus.SENT}
    # WeChat's retry of the same message, arriving after the step: nothing twice
    assert (await post.encrypted(text_xml(VOLUNTEER_OPENID, "菜单", 9001))).text == "success"
    await oa.pump.drain()
    assert len(wechat_api.sent("message/custom/send")) == 1


async def test_subscribe_event_reaches_the_runner_once(county: App, post: Poster) -> None:
    xml = event_xml(NEWCOMER_OPENID, "subscribe", create_time=1795100000)
    # whatever dialog declares "subscribe" (the family welcome, issue #7) answers it; the event
    # is handed to the runner and recorded once; WeChat's retry gets the same answer again
    first = await post.encrypted(xml)
    assert first.status_code == 200
    assert count(county, DialogSession, DialogSession.address == NEWCOMER_OPENID) == 1
    again = await post.encrypted(xml)
    if first.text == "success":
        assert again.text == "success"
    else:
        assert post.open_reply(again)["Content"] == post.open_reply(first)["Content"]
    assert count(county, ProcessedInbound,
                 ProcessedInbound.inbound_key == f"{NEWCOMER_OPENID}:1795100000") == 1


async def test_following_through_a_qr_code_carries_its_scene(oa: OfficialAccountChannel) -> None:
    """The scene of a parametric QR code (e.g. a family invite code) reaches the runner with the event."""
    scanned = await oa._inbound({"MsgType": "event", "Event": "subscribe_scan", "EventKey": "ABCD-EF23",
                                 "CreateTime": "1795000100"}, NEWCOMER_OPENID)
    assert scanned is not None and (scanned.event, scanned.start_payload) == ("subscribe", "ABCD-EF23")
    assert scanned.message_id == f"{NEWCOMER_OPENID}:1795000100"
    again = await oa._inbound({"MsgType": "event", "Event": "scan", "EventKey": "ABCD-EF23",
                               "CreateTime": "1795000200"}, NEWCOMER_OPENID)
    assert again is not None and (again.event, again.start_payload) == ("scan", "ABCD-EF23")
    plain = await oa._inbound({"MsgType": "event", "Event": "subscribe", "CreateTime": "1"}, NEWCOMER_OPENID)
    assert plain is not None and (plain.event, plain.start_payload) == ("subscribe", None)


async def test_menu_click_and_spoken_words_are_read_like_text(county: App, post: Poster) -> None:
    link(county, VOLUNTEER_OPENID, person_id(county, phone="10000000001"))
    click = post.open_reply(await post.encrypted(event_xml(VOLUNTEER_OPENID, "CLICK", "菜单")))
    assert "1. 走访记录" in click["Content"]
    voice = post.open_reply(await post.encrypted(message_xml(
        VOLUNTEER_OPENID, msg_type="voice", MediaId="m1", Format="amr", Recognition="走访记录", MsgId=9101)))
    assert "QX001" in voice["Content"]


async def test_subscription_popup_choice_counts_as_an_interaction(county: App, post: Poster) -> None:
    pid = person_id(county, name="王德福")
    link(county, FAMILY_OPENID, pid, last_inbound_hours_ago=100)
    popup = ("<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[TPL-A]]></TemplateId>"
             "<SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene>"
             "</List><List><TemplateId><![CDATA[TPL-B]]></TemplateId><SubscribeStatusString>"
             "<![CDATA[reject]]></SubscribeStatusString><PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent>")
    xml = event_xml(FAMILY_OPENID, "subscribe_msg_popup_event", create_time=1795200000).replace(
        "</xml>", popup + "</xml>")
    response = await post.encrypted(xml)
    assert response.status_code == 200
    assert wechat.subscription_choice({"SubscribeMsgPopupEvent": {"List": [
        {"SubscribeStatusString": "reject"}]}}) == "subscribe_msg_reject"
    with county.db.session() as session:
        address = session.scalar(select(ChannelAddress).where(ChannelAddress.address == FAMILY_OPENID))
        assert address is not None and address.last_inbound_at == county.services.now()
    assert count(county, ProcessedInbound,
                 ProcessedInbound.inbound_key == f"{FAMILY_OPENID}:1795200000") == 1


async def test_unsubscribe_withdraws_consent_at_once(county: App, post: Poster) -> None:
    pid = person_id(county, name="王德福")
    link(county, FAMILY_OPENID, pid)
    now = county.services.now()
    with county.db.session() as session:
        session.add(Consent(person_id=pid, channel="wechat", wording_version="v1", given_at=now))
        session.add(Preference(person_id=pid, festivals=True, updated_at=now))
        session.add(OutboxMessage(idempotency_key="greeting:test", channel="wechat", address=FAMILY_OPENID,
                                  person_id=pid, kind="greeting", payload={"text": "中秋快乐"},
                                  status=OutboxStatus.QUEUED, created_at=now, next_attempt_at=now))
    xml = event_xml(FAMILY_OPENID, "unsubscribe", create_time=1795300000)
    response = await post.encrypted(xml)
    assert response.text == "success"
    with county.db.session() as session:
        consent = session.scalar(select(Consent).where(Consent.person_id == pid))
        preference = session.get(Preference, pid)
        address = session.scalar(select(ChannelAddress).where(ChannelAddress.address == FAMILY_OPENID))
        queued = session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == "greeting:test"))
        assert consent is not None and consent.withdrawn_at == now
        assert preference is not None and preference.stopped_at == now
        assert address is not None and address.blocked_at == now
        assert queued is not None and queued.status == OutboxStatus.FAILED and queued.last_error == "unsubscribed"
    assert count(county, AuditEntry, AuditEntry.entity == "consent") == 1
    # the retry of the same event changes nothing; a later follow makes the address usable again
    county.services.clock.advance(minutes=5)  # type: ignore[attr-defined]
    assert (await post.encrypted(xml)).text == "success"
    assert count(county, AuditEntry, AuditEntry.entity == "consent") == 1
    await post.encrypted(event_xml(FAMILY_OPENID, "subscribe"))
    with county.db.session() as session:
        address = session.scalar(select(ChannelAddress).where(ChannelAddress.address == FAMILY_OPENID))
        consent = session.scalar(select(Consent).where(Consent.person_id == pid))
        assert address is not None and address.blocked_at is None
        assert consent is not None and consent.withdrawn_at == now  # consent is asked afresh, not assumed


# ---------------------------------------------------------------------------- sending

async def test_inside_the_window_a_customer_service_message_goes(
        county: App, oa: OfficialAccountChannel, wechat_api: FakeWeChatAPI) -> None:
    link(county, FAMILY_OPENID, person_id(county, name="王德福"), last_inbound_hours_ago=47)
    result = await oa.sender().send(family_request(county, "王大爷，天冷了，注意添衣。"))  # type: ignore[union-attr]
    assert result.ok
    [call] = wechat_api.sent("message/custom/send")
    assert call.body == {"touser": FAMILY_OPENID, "msgtype": "text",
                         "text": {"content": "王大爷，天冷了，注意添衣。"}}
    assert call.params["access_token"].startswith("TOKEN-")
    [token_call] = wechat_api.tried("token")
    assert token_call.params == {"grant_type": "client_credential", "appid": APPID, "secret": "oa-secret"}


async def test_outside_the_window_the_configured_template_goes(
        county: App, wechat_api: FakeWeChatAPI) -> None:
    channel = configure(county, wechat_api, templates=TEMPLATES)
    link(county, FAMILY_OPENID, person_id(county, name="王德福"), last_inbound_hours_ago=72)
    title = "中秋节快到了，协会志愿者林晓燕祝您和家人身体安康。"
    request = family_request(county, f"{title}\n有事随时找我。", occasion="mid_autumn",
                             template={"values": {"volunteer": "林晓燕"}})
    result = await channel.sender().send(request)  # type: ignore[union-attr]
    assert result.ok and result.platform_message_id
    assert wechat_api.tried("message/custom/send") == []
    [call] = wechat_api.sent("message/template/send")
    assert call.body["template_id"] == "TPL-MID-AUTUMN" and call.body["touser"] == FAMILY_OPENID
    assert call.body["data"] == {"thing1": {"value": title[:19] + "…"},
                                 "thing2": {"value": "林晓燕"}}
    other = await channel.sender().send(family_request(county, "本周问候"))  # type: ignore[union-attr]
    assert other.ok
    assert wechat_api.sent("message/template/send")[-1].body["data"] == {
        "thing1": {"value": "本周问候"}, "time2": {"value": "2026年11月20日"}}


async def test_with_neither_window_nor_template_the_volunteer_is_asked_to_call(
        county: App, oa: OfficialAccountChannel, wechat_api: FakeWeChatAPI) -> None:
    link(county, FAMILY_OPENID, person_id(county, name="王德福"), last_inbound_hours_ago=49)
    result = await oa.sender().send(family_request(county, "重阳节问候"))  # type: ignore[union-attr]
    assert not result.ok and result.permanent and not result.unreachable and result.error == "window"
    assert wechat_api.calls == []  # nothing was even tried
    with county.db.session() as session:
        [task] = session.scalars(select(Task)).all()
        volunteer = session.get(Person, task.assignee_id)
    assert task.kind == "call_family" and "重阳节问候" in (task.reason or "")
    assert volunteer is not None and volunteer.phone == "10000000001"  # QX001's contact volunteer
    await oa.sender().send(family_request(county, "又一条"))  # type: ignore[union-attr]
    assert count(county, Task) == 1  # one open call task per member, not one per message


@pytest.mark.parametrize(("codes", "ok", "retry_after", "permanent", "unreachable", "error"), [
    ((45015,), True, None, False, False, None),  # window closed early: template carries it
    ((45047,), True, None, False, False, None),  # too many replies in a row: template
    ((43004,), False, None, True, True, "wechat:43004"),  # unfollowed: stop
    ((45009,), False, 600.0, False, False, "wechat:45009"),  # daily quota: back off
    ((40003,), False, None, True, False, "wechat:40003"),  # invalid openid: permanent
    ((-1,), False, None, False, False, "wechat:-1"),  # system busy: retry
])
async def test_customer_service_errors_are_classified(
        county: App, wechat_api: FakeWeChatAPI, codes: tuple[int, ...], ok: bool,
        retry_after: float | None, permanent: bool, unreachable: bool, error: str | None) -> None:
    channel = configure(county, wechat_api, templates=TEMPLATES)
    link(county, FAMILY_OPENID, person_id(county, name="王德福"), last_inbound_hours_ago=2)
    wechat_api.fail("message/custom/send", *codes)
    result = await channel.sender().send(family_request(county, "天冷了"))  # type: ignore[union-attr]
    assert (result.ok, result.retry_after, result.permanent, result.unreachable, result.error) == (
        ok, retry_after, permanent, unreachable, error)
    assert len(wechat_api.sent("message/template/send")) == (1 if ok else 0)


@pytest.mark.parametrize(("code", "permanent", "unreachable"), [(43004, True, True), (45009, False, False),
                                                                (40037, True, False)])
async def test_template_errors_are_classified(county: App, wechat_api: FakeWeChatAPI, code: int,
                                              permanent: bool, unreachable: bool) -> None:
    channel = configure(county, wechat_api, templates=TEMPLATES)
    link(county, FAMILY_OPENID, person_id(county, name="王德福"), last_inbound_hours_ago=200)
    wechat_api.fail("message/template/send", code)
    result = await channel.sender().send(family_request(county, "天冷了"))  # type: ignore[union-attr]
    assert not result.ok and result.error == f"wechat:{code}"
    assert (result.permanent, result.unreachable) == (permanent, unreachable)


async def test_http_trouble_is_retried_never_recorded_as_sent(
        county: App, oa: OfficialAccountChannel, wechat_api: FakeWeChatAPI) -> None:
    link(county, FAMILY_OPENID, person_id(county, name="王德福"))
    wechat_api.fail_http("message/custom/send", 502)
    result = await oa.sender().send(family_request(county, "天冷了"))  # type: ignore[union-attr]
    assert not result.ok and not result.permanent and result.error == "wechat:http"
    wechat_api.fail_http("message/custom/send", 200)
    result = await oa.sender().send(family_request(county, "天冷了"))  # type: ignore[union-attr]
    assert not result.ok and not result.permanent and result.error == "wechat:bad_answer"
    wechat_api.fail("token", 40013)
    oa.sender().client.tokens.forget()  # type: ignore[attr-defined]  # no token anywhere: one must be fetched
    result = await oa.sender().send(family_request(county, "天冷了"))  # type: ignore[union-attr]
    assert not result.ok and not result.permanent and result.error == "wechat:token:40013"


@pytest.mark.parametrize("refusal", ["expired", 40001, 42001])
async def test_a_refused_token_is_refreshed_once_and_the_send_retried(
        county: App, oa: OfficialAccountChannel, wechat_api: FakeWeChatAPI, refusal: object) -> None:
    link(county, FAMILY_OPENID, person_id(county, name="王德福"))
    sender = oa.sender()
    assert (await sender.send(family_request(county, "一")) ).ok  # type: ignore[union-attr]
    if refusal == "expired":
        wechat_api.expire_tokens()
    else:
        wechat_api.fail("message/custom/send", int(refusal))  # type: ignore[call-overload]
    result = await sender.send(family_request(county, "二"))  # type: ignore[union-attr]
    assert result.ok
    assert wechat_api.token_fetches() == 2
    assert [c.errcode for c in wechat_api.tried("message/custom/send")][-2:] != [0, 0]
    assert [c.body["text"]["content"] for c in wechat_api.sent("message/custom/send")] == ["一", "二"]


async def test_token_refusal_is_retried_only_once(
        county: App, oa: OfficialAccountChannel, wechat_api: FakeWeChatAPI) -> None:
    link(county, FAMILY_OPENID, person_id(county, name="王德福"))
    wechat_api.fail("message/custom/send", *([42001] * 10))
    result = await oa.sender().send(family_request(county, "天冷了"))  # type: ignore[union-attr]
    assert not result.ok and not result.permanent and result.error == "wechat:42001"
    assert len(wechat_api.tried("message/custom/send")) == 2  # wechatpy alone would recurse forever
    assert wechat_api.token_fetches() == 2


async def test_workers_share_one_token_through_the_database(
        county: App, wechat_api: FakeWeChatAPI) -> None:
    first, second = configure(county, wechat_api), configure(county, wechat_api)  # two workers
    link(county, FAMILY_OPENID, person_id(county, name="王德福"))
    results = await asyncio.gather(*(channel.sender().send(family_request(county, f"第{i}条"))  # type: ignore[union-attr]
                                     for i, channel in enumerate([first, second, first, second])))
    assert all(r.ok for r in results)
    assert wechat_api.token_fetches() == 1
    with county.db.session() as session:
        lease = session.get(Lease, f"wechat:token:{APPID}")
        assert lease is not None and lease.value in wechat_api.tokens and lease.expires_at is not None
    # an expired token: the first worker to notice refreshes; the other finds the new one
    wechat_api.expire_tokens()
    results = await asyncio.gather(*(channel.sender().send(family_request(county, "又"))  # type: ignore[union-attr]
                                     for channel in (first, second)))
    assert all(r.ok for r in results)
    assert wechat_api.token_fetches() == 2


async def test_long_replies_are_split_into_messages_wechat_accepts(
        county: App, oa: OfficialAccountChannel, wechat_api: FakeWeChatAPI) -> None:
    link(county, FAMILY_OPENID, person_id(county, name="王德福"))
    text = "\n".join(f"第{i}行：今天天气不错，记得按时吃药，有事给我打电话。" for i in range(80))
    result = await oa.sender().send(family_request(county, text, kind="reply"))  # type: ignore[union-attr]
    assert result.ok
    pieces = [c.body["text"]["content"] for c in wechat_api.sent("message/custom/send")]
    assert len(pieces) > 1 and all(len(p.encode()) <= 2000 for p in pieces)
    assert "\n".join(pieces) == text


async def test_a_picture_goes_as_an_image_message_inside_the_window(
        county: App, oa: OfficialAccountChannel, wechat_api: FakeWeChatAPI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    link(county, FAMILY_OPENID, person_id(county, name="王德福"))
    picture = tmp_path / "card.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(500))
    request = family_request(county, "中秋贺卡", attachment={"kind": "photo", "path": str(picture)})
    assert (await oa.sender().send(request)).ok  # type: ignore[union-attr]
    text, image = wechat_api.sent("message/custom/send")
    assert text.body["text"]["content"] == "中秋贺卡"
    assert image.body["touser"] == FAMILY_OPENID and image.body["msgtype"] == "image"
    assert image.body["image"]["media_id"].startswith("MEDIA-")
    [upload] = wechat_api.sent("media/upload")
    assert upload.params["type"] == "image" and upload.body["_png"]
