"""The WeCom app channel, end to end: encrypted posts to the live HTTP app (WeCom's published
sample vectors and our own), wechatpy's WeCom client sending to a fake API on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from wechatpy.enterprise import WeChatCrypto

from bot.app import App
from bot.channels import wecom
from bot.channels.wecom import WeComChannel
from bot.config import ConfigError
from bot.delivery.base import SendRequest
from dialogs.engine import catalog
from storage.invites import create_invite
from storage.models import (
    ChannelAddress,
    DialogSession,
    OutboxMessage,
    OutboxStatus,
    Person,
    ProcessedInbound,
)
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.wechat_side import Poster, event_xml, live_http, message_xml, text_xml

CORP_ID = "ww0a1b2c3d4e5f6a7b"
TOKEN = "warmline-wecom-token"
AES_KEY = "BfTb2vvpoGFIORSNaD9wKtMXegOMocDa4K0DKP6MDOU"
AGENT_ID = 1000002

# WeCom's published sample (the official WXBizMsgCrypt demo) and wechatpy's own test vector.
OFFICIAL = {"corp_id": "wx5823bf96d3bd56c7", "token": "QDG6eK",
            "aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"}
OFFICIAL_ECHO = {"msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "timestamp": "1409659589",
                 "nonce": "263014780",
                 "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="}
OFFICIAL_POST = {
    "agent_id": 218, "user": "mycreate", "msg_id": "4561255354251345929",
    "params": {"msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6", "timestamp": "1409659813",
               "nonce": "1372623149"},
    "body": "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>",
}
WECHATPY = {"corp_id": "wx49f0ab532d5d035a", "token": "123456",
            "aes_key": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"}
WECHATPY_ECHO = {"msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "timestamp": "1411443780",
                 "nonce": "437374425",
                 "echostr": "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="}
WECHATPY_POST = {
    "agent_id": 1, "user": "messense",
    "params": {"msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "timestamp": "1411525903",
               "nonce": "461056294"},
    "body": "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>",
}


@pytest.fixture
def wecom_api() -> Iterator[FakeWeChatAPI]:
    api = FakeWeChatAPI().start()
    yield api
    api.close()


def configure(app: App, api: FakeWeChatAPI, *, corp_id: str = CORP_ID, token: str = TOKEN,
              aes_key: str = AES_KEY, agent_id: int = AGENT_ID) -> WeComChannel:
    app.settings.env.update({"WARMLINE_WECOM_CORP_ID": corp_id, "WARMLINE_WECOM_SECRET": "wecom-secret",
                             "WARMLINE_WECOM_AGENT_ID": str(agent_id), "WARMLINE_WECOM_TOKEN": token,
                             "WARMLINE_WECOM_AES_KEY": aes_key, "WARMLINE_WECOM_API_BASE": api.base})
    channel = wecom.from_app(app)
    assert channel is not None
    return channel


@pytest.fixture
def app_channel(county: App, wecom_api: FakeWeChatAPI) -> WeComChannel:
    return configure(county, wecom_api)


@pytest.fixture
async def post(app_channel: WeComChannel) -> AsyncIterator[Poster]:
    async with live_http(app_channel.routes()) as client:
        yield Poster(client, "/wecom", TOKEN, WeChatCrypto(TOKEN, AES_KEY, CORP_ID), wecom=True)
        await app_channel.stop()


def ours(xml: str) -> str:
    """Our own test messages carry our AgentID, as WeCom's do."""
    return xml.replace("</xml>", f"<AgentID>{AGENT_ID}</AgentID></xml>")


def link(app: App, userid: str, phone: str) -> None:
    with app.db.session() as session:
        person = session.scalar(select(Person).where(Person.phone == phone))
        assert person is not None
        session.add(ChannelAddress(person_id=person.id, channel="wecom", address=userid,
                                   created_at=app.services.now()))


def count(app: App, model: type, *where: object) -> int:
    with app.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# ---------------------------------------------------------------------------- configuration

def test_channel_needs_every_setting(county: App, wecom_api: FakeWeChatAPI) -> None:
    assert wecom.from_app(county) is None
    county.settings.env.update({"WARMLINE_WECOM_CORP_ID": CORP_ID, "WARMLINE_WECOM_SECRET": "s"})
    with pytest.raises(ConfigError, match="WARMLINE_WECOM_AGENT_ID"):
        wecom.from_app(county)


# ---------------------------------------------------------------------------- inbound

@pytest.mark.parametrize(("vector", "echo", "plain"), [(OFFICIAL, OFFICIAL_ECHO, "1616140317555161061"),
                                                       (WECHATPY, WECHATPY_ECHO, "5927782489442352469")])
async def test_url_check_with_published_vectors(county: App, wecom_api: FakeWeChatAPI, vector: dict,
                                                echo: dict, plain: str) -> None:
    channel = configure(county, wecom_api, corp_id=vector["corp_id"], token=vector["token"],
                        aes_key=vector["aes_key"])
    async with live_http(channel.routes()) as client:
        ok = await client.get("/wecom", params=echo)
        forged = await client.get("/wecom", params={**echo, "nonce": "1"})
    assert ok.status_code == 200
    assert ok.text == plain
    assert forged.status_code == 403


@pytest.mark.parametrize(("vector", "sample"), [(OFFICIAL, OFFICIAL_POST), (WECHATPY, WECHATPY_POST)])
async def test_published_sample_messages_reach_the_runner(county: App, wecom_api: FakeWeChatAPI,
                                                           vector: dict, sample: dict) -> None:
    channel = configure(county, wecom_api, corp_id=vector["corp_id"], token=vector["token"],
                        aes_key=vector["aes_key"], agent_id=sample["agent_id"])
    crypto = WeChatCrypto(vector["token"], vector["aes_key"], vector["corp_id"])
    channel.wall_clock = lambda: float(sample["params"]["timestamp"])  # signed years ago
    async with live_http(channel.routes()) as client:
        response = await client.post("/wecom", params=sample["params"], content=sample["body"].encode())
        reply = Poster(client, "/wecom", vector["token"], crypto, wecom=True).open_reply(response)
    assert response.status_code == 200 and "<Encrypt>" in response.text
    assert reply["ToUserName"] == sample["user"] and reply["AgentID"] == str(sample["agent_id"])
    assert catalog.t("register.ask_code") in reply["Content"]  # a stranger registers with a code
    assert count(county, DialogSession, DialogSession.channel == "wecom",
                 DialogSession.address == sample["user"]) == 1
    assert [c.endpoint for c in wecom_api.calls] == ["gettoken", "user/get"]  # looked for a mobile


async def test_a_volunteer_registers_with_an_invite_code_and_gets_numbered_choices(
        county: App, post: Poster) -> None:
    with county.db.session() as session:
        code = create_invite(session, role="volunteer", now=county.services.now(), ttl=timedelta(days=3),
                             township="清溪镇")
    assert post.open_reply(await post.encrypted(ours(text_xml("zhangwei", code, 1))))["Content"] == \
        catalog.t("register.ask_name")
    confirm = post.open_reply(await post.encrypted(ours(text_xml("zhangwei", "张伟", 2))))["Content"]
    assert "1. " in confirm and "2. " in confirm
    done = post.open_reply(await post.encrypted(ours(text_xml("zhangwei", "1", 3))))["Content"]
    assert "张伟" in done
    with county.db.session() as session:
        person = session.scalar(select(Person).join(ChannelAddress).where(
            ChannelAddress.channel == "wecom", ChannelAddress.address == "zhangwei"))
        assert person is not None and person.name == "张伟" and person.role == "volunteer"
    menu = post.open_reply(await post.encrypted(ours(text_xml("zhangwei", "菜单", 4))))["Content"]
    assert "1. 走访记录" in menu


async def test_a_known_volunteer_is_linked_by_the_mobile_wecom_holds(
        county: App, post: Poster, wecom_api: FakeWeChatAPI) -> None:
    wecom_api.mobiles["linxiaoyan"] = "10000000001"
    reply = post.open_reply(await post.encrypted(ours(text_xml("linxiaoyan", "你好", 11))))["Content"]
    assert "林晓燕" in reply
    [lookup] = wecom_api.sent("user/get")
    assert lookup.params["userid"] == "linxiaoyan"
    menu = post.open_reply(await post.encrypted(ours(text_xml("linxiaoyan", "菜单", 12))))["Content"]
    assert "1. 走访记录" in menu
    assert len(wecom_api.tried("user/get")) == 1  # asked once, on first contact only


async def test_menu_clicks_read_like_text_and_media_gets_a_kind_hint(county: App, post: Poster) -> None:
    link(county, "linxiaoyan", "10000000001")
    click = post.open_reply(await post.encrypted(ours(event_xml("linxiaoyan", "click", "走访记录"))))
    assert "QX001" in click["Content"]
    picture = post.open_reply(await post.encrypted(ours(message_xml(
        "linxiaoyan", msg_type="image", PicUrl="http://x/1.jpg", MediaId="m", MsgId=21))))
    assert picture["Content"] == catalog.t("wechat.text_only")
    assert (await post.encrypted(ours(event_xml("linxiaoyan", "enter_agent", "")))).text == "success"


async def test_forged_or_foreign_posts_are_not_processed(county: App, post: Poster) -> None:
    link(county, "linxiaoyan", "10000000001")
    forged = await post.encrypted(ours(text_xml("linxiaoyan", "菜单", 31)), msg_signature="f" * 40)
    assert forged.status_code == 403
    unsigned = await post.client.post("/wecom", content=b"<xml></xml>")
    assert unsigned.status_code == 403
    other_app = await post.encrypted(text_xml("linxiaoyan", "菜单", 32).replace("</xml>", "<AgentID>99</AgentID></xml>"))
    assert other_app.text == "success"
    assert count(county, ProcessedInbound, ProcessedInbound.channel == "wecom") == 0
    assert count(county, OutboxMessage) == 0


async def test_retries_are_processed_once_and_slow_steps_reply_through_the_api(
        county: App, app_channel: WeComChannel, post: Poster, wecom_api: FakeWeChatAPI) -> None:
    link(county, "linxiaoyan", "10000000001")
    app_channel.pump.budget = 0.0  # no step can finish within a zero budget
    xml = ours(text_xml("linxiaoyan", "菜单", 41))
    assert (await post.encrypted(xml)).text == "success"
    assert (await post.encrypted(xml)).text == "success"  # WeCom's retry
    await app_channel.pump.drain()
    [call] = wecom_api.sent("message/send")
    assert call.body["touser"] == "linxiaoyan" and call.body["agentid"] == AGENT_ID
    assert call.body["msgtype"] == "text" and "1. 走访记录" in call.body["text"]["content"]
    assert count(county, ProcessedInbound, ProcessedInbound.inbound_key == "41") == 1
    with county.db.session() as session:
        assert set(session.scalars(select(OutboxMessage.status))) == {OutboxStatus.SENT}


# ---------------------------------------------------------------------------- sending

def reminder(text: str = "明天上午去QX001走访") -> SendRequest:
    return SendRequest(outbox_id=7, channel="wecom", address="linxiaoyan", kind="reminder",
                       payload={"text": text, "options": [{"label": "走访记录", "token": "t"}]})


@pytest.mark.parametrize(("setup", "ok", "permanent", "unreachable", "error"), [
    (None, True, False, False, None),
    ("departed", False, True, True, "wecom:81013"),
    (81013, False, True, True, "wecom:81013"),
    (45009, False, False, False, "wecom:45009"),
    (60020, False, False, False, "wecom:60020"),
    (40003, False, True, False, "wecom:40003"),
])
async def test_sending_to_volunteers_reads_every_answer(
        app_channel: WeComChannel, wecom_api: FakeWeChatAPI, setup: object, ok: bool,
        permanent: bool, unreachable: bool, error: str | None) -> None:
    if setup == "departed":
        wecom_api.departed.add("linxiaoyan")
    elif setup is not None:
        wecom_api.fail("message/send", int(setup))  # type: ignore[call-overload]
    result = await app_channel.sender().send(reminder())  # type: ignore[union-attr]
    assert (result.ok, result.permanent, result.unreachable, result.error) == (ok, permanent, unreachable, error)
    if ok:
        [call] = wecom_api.sent("message/send")
        assert call.body["text"]["content"] == "明天上午去QX001走访\n1. 走访记录"
        assert result.platform_message_id and result.platform_message_id.startswith("wecom-")
        [token] = wecom_api.tried("gettoken")
        assert token.params == {"corpid": CORP_ID, "corpsecret": "wecom-secret"}


async def test_an_expired_wecom_token_is_refreshed_once(app_channel: WeComChannel,
                                                        wecom_api: FakeWeChatAPI) -> None:
    sender = app_channel.sender()
    assert (await sender.send(reminder("一"))).ok  # type: ignore[union-attr]
    wecom_api.expire_tokens()
    assert (await sender.send(reminder("二"))).ok  # type: ignore[union-attr]
    assert wecom_api.token_fetches() == 2
    wecom_api.fail("message/send", 40014, 40014, 40014)
    result = await sender.send(reminder("三"))  # type: ignore[union-attr]
    assert not result.ok and result.error == "wecom:40014" and not result.permanent
    assert wecom_api.token_fetches() == 3
    assert [c.body["text"]["content"].splitlines()[0] for c in wecom_api.sent("message/send")] == ["一", "二"]


async def test_concurrent_first_sends_fetch_one_token(county: App, wecom_api: FakeWeChatAPI) -> None:
    workers = [configure(county, wecom_api) for _ in range(3)]
    results = await asyncio.gather(*(w.sender().send(reminder()) for w in workers))  # type: ignore[union-attr]
    assert all(r.ok for r in results) and wecom_api.token_fetches() == 1


async def test_a_chart_follows_its_text_as_an_image(app_channel: WeComChannel, wecom_api: FakeWeChatAPI,
                                                    tmp_path) -> None:  # type: ignore[no-untyped-def]
    chart = tmp_path / "chart.png"
    chart.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    request = SendRequest(outbox_id=8, channel="wecom", address="linxiaoyan", kind="reply",
                          payload={"text": "本月走访 12 次", "options": [],
                                   "attachment": {"kind": "photo", "path": str(chart), "filename": "chart.png"}})
    result = await app_channel.sender().send(request)  # type: ignore[union-attr]
    assert result.ok
    [upload] = wecom_api.sent("media/upload")
    assert upload.params["type"] == "image" and upload.body["_png"] and upload.body["_upload_bytes"] > 2000
    text, image = wecom_api.sent("message/send")
    assert text.body["text"]["content"] == "本月走访 12 次"
    assert image.body["msgtype"] == "image" and image.body["image"]["media_id"].startswith("MEDIA-")
    chart.unlink()
    missing = await app_channel.sender().send(request)  # type: ignore[union-attr]
    assert not missing.ok and missing.permanent and missing.error == "wecom:attachment_missing"
