"""Forged, stale and replayed posts on /wechat and /wecom, and passive replies no text can reshape
(issue 17, items 1 and 3): signed posts to the live HTTP app, records in a real database."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise import WeChatCrypto as WeComCrypto

from bot.app import App
from bot.channels.wx_reply import cdata, text_reply
from storage.models import (
    Consent,
    DialogSession,
    FamilyMessage,
    HouseholdMember,
    OutboxMessage,
    ProcessedInbound,
)
from tests import test_wechat as oa_side
from tests import test_wecom as wecom_side
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.wechat_side import Poster, event_xml, live_http, sign, text_xml

VOLUNTEER = oa_side.VOLUNTEER_OPENID
FAMILY = oa_side.FAMILY_OPENID


@pytest.fixture
def api() -> Iterator[FakeWeChatAPI]:
    fake = FakeWeChatAPI().start()
    yield fake
    fake.close()


def count(app: App, model: type, *where: object) -> int:
    with app.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def oa_poster(client: object, *, aes: bool = True) -> Poster:
    crypto = WeChatCrypto(oa_side.TOKEN, oa_side.AES_KEY, oa_side.APPID) if aes else None
    return Poster(client, "/wechat", oa_side.TOKEN, crypto)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- /wechat, AES key set

async def test_with_an_aes_key_a_genuinely_signed_plain_body_is_refused(county: App, api: FakeWeChatAPI) -> None:
    """The plain signature covers only token, timestamp and nonce: anyone who saw one request URL
    could post any body under it — here, a family's 退订 (withdrawing consent)."""
    channel = oa_side.configure(county, api)
    pid = oa_side.person_id(county, name="王德福")
    oa_side.link(county, FAMILY, pid)
    with county.db.session() as session:
        session.add(Consent(person_id=pid, channel="wechat", wording_version="v1", given_at=county.services.now()))
    async with live_http(channel.routes()) as client:
        post = oa_poster(client)
        genuine_params, _body = post.seal(text_xml(FAMILY, "你好", 1))
        forged = text_xml(FAMILY, "退订", 2)
        for params in ({k: v for k, v in genuine_params.items() if k != "encrypt_type"},
                       {k: v for k, v in genuine_params.items() if k not in ("encrypt_type", "msg_signature")}):
            response = await client.post("/wechat", params=params, content=forged.encode())
            assert response.status_code == 403
        unsubscribe = await post.plain(event_xml(FAMILY, "unsubscribe"))
        assert unsubscribe.status_code == 403
        await channel.stop()
    with county.db.session() as session:
        consent = session.scalar(select(Consent).where(Consent.person_id == pid))
        assert consent is not None and consent.withdrawn_at is None
    assert count(county, ProcessedInbound, ProcessedInbound.channel == "wechat") == 0
    assert count(county, DialogSession) == 0


@pytest.mark.parametrize("offset", [-301, 301, -3600 * 24 * 365])
async def test_a_stale_or_future_timestamp_is_refused(county: App, api: FakeWeChatAPI, offset: int) -> None:
    channel = oa_side.configure(county, api)
    oa_side.link(county, VOLUNTEER, oa_side.person_id(county, phone="10000000001"))
    async with live_http(channel.routes()) as client:
        post = oa_poster(client)
        params, body = post.seal(text_xml(VOLUNTEER, "菜单", 11), timestamp=str(int(time.time()) + offset))
        refused = await client.post("/wechat", params=params, content=body)
        params, body = post.seal(text_xml(VOLUNTEER, "菜单", 12), timestamp=str(int(time.time()) - 240))
        accepted = await client.post("/wechat", params=params, content=body)
        await channel.stop()
    assert refused.status_code == 403 and "走访" not in refused.text
    assert "1. 走访记录" in post.open_reply(accepted)["Content"]
    assert count(county, ProcessedInbound, ProcessedInbound.channel == "wechat") == 1


async def test_a_replayed_request_is_refused_by_every_worker(county: App, api: FakeWeChatAPI) -> None:
    """Two workers on one database: a request seen by one is refused by the other (and by itself)."""
    first, second = oa_side.configure(county, api), oa_side.configure(county, api)
    oa_side.link(county, VOLUNTEER, oa_side.person_id(county, phone="10000000001"))
    async with live_http(first.routes()) as one, live_http(second.routes()) as two:
        params, body = oa_poster(one).seal(text_xml(VOLUNTEER, "菜单", 21))
        genuine = await one.post("/wechat", params=params, content=body)
        elsewhere = await two.post("/wechat", params=params, content=body)
        again = await one.post("/wechat", params=params, content=body)
        await first.stop()
        await second.stop()
    assert "1. 走访记录" in oa_poster(one).open_reply(genuine)["Content"]
    assert elsewhere.status_code == 403 and again.status_code == 403
    assert count(county, OutboxMessage, OutboxMessage.address == VOLUNTEER) >= 1
    assert count(county, ProcessedInbound, ProcessedInbound.channel == "wechat-sig") == 1


async def test_plain_mode_without_a_key_still_checks_time_and_replays(county: App, api: FakeWeChatAPI) -> None:
    channel = oa_side.configure(county, api, aes_key=None)
    oa_side.link(county, VOLUNTEER, oa_side.person_id(county, phone="10000000001"))
    async with live_http(channel.routes()) as client:
        post = oa_poster(client, aes=False)
        ok = await post.plain(text_xml(VOLUNTEER, "菜单", 31))
        stamp, nonce = str(int(time.time()) - 400), "5150"
        stale = await post.plain(text_xml(VOLUNTEER, "菜单", 32), timestamp=stamp, nonce=nonce,
                                 signature=sign(oa_side.TOKEN, stamp, nonce))
        stamp, nonce = str(int(time.time())), "6161"
        params = {"timestamp": stamp, "nonce": nonce, "signature": sign(oa_side.TOKEN, stamp, nonce)}
        once = await client.post("/wechat", params=params, content=text_xml(VOLUNTEER, "菜单", 33).encode())
        replay = await client.post("/wechat", params=params, content=text_xml(VOLUNTEER, "1", 34).encode())
        await channel.stop()
    assert "1. 走访记录" in ok.text and "1. 走访记录" in once.text
    assert stale.status_code == 403 and replay.status_code == 403
    assert count(county, ProcessedInbound, ProcessedInbound.inbound_key == "34") == 0


# ---------------------------------------------------------------------------- /wecom

async def test_wecom_refuses_stale_and_replayed_posts(county: App, api: FakeWeChatAPI) -> None:
    channel = wecom_side.configure(county, api)
    wecom_side.link(county, "linxiaoyan", "10000000001")
    crypto = WeComCrypto(wecom_side.TOKEN, wecom_side.AES_KEY, wecom_side.CORP_ID)
    async with live_http(channel.routes()) as client:
        post = Poster(client, "/wecom", wecom_side.TOKEN, crypto, wecom=True)
        params, body = post.seal(wecom_side.ours(text_xml("linxiaoyan", "菜单", 41)),
                                 timestamp=str(int(time.time()) - 301))
        stale = await client.post("/wecom", params=params, content=body)
        params, body = post.seal(wecom_side.ours(text_xml("linxiaoyan", "菜单", 42)))
        genuine = await client.post("/wecom", params=params, content=body)
        replay = await client.post("/wecom", params=params, content=body)
        await channel.stop()
    assert stale.status_code == 403 and replay.status_code == 403
    assert "1. 走访记录" in post.open_reply(genuine)["Content"]
    assert count(county, ProcessedInbound, ProcessedInbound.channel == "wecom") == 1


# ---------------------------------------------------------------------------- passive replies (item 3)

INJECTION = "]]><MsgType><![CDATA[news]]></MsgType><Content>谢谢"


def parsed(xml_text: str) -> ET.Element:
    root = ET.fromstring(xml_text)
    assert [child.tag for child in root].count("MsgType") == 1
    return root


async def test_a_familys_words_cannot_reshape_the_reply_a_wecom_coordinator_sees(
        county: App, api: FakeWeChatAPI) -> None:
    channel = wecom_side.configure(county, api)
    wecom_side.link(county, "zhenglihua", "10000000101")  # 郑丽华, coordinator of 清溪镇
    father = oa_side.person_id(county, name="王德福")
    with county.db.session() as session:
        household_id = session.scalar(select(HouseholdMember.household_id).where(HouseholdMember.person_id == father))
        session.add(FamilyMessage(household_id=household_id, person_id=father, channel="wechat",
                                  text=INJECTION, received_at=county.services.now()))
    crypto = WeComCrypto(wecom_side.TOKEN, wecom_side.AES_KEY, wecom_side.CORP_ID)
    replies = []
    async with live_http(channel.routes()) as client:
        post = Poster(client, "/wecom", wecom_side.TOKEN, crypto, wecom=True)
        for i, words in enumerate(("回复家属", "1")):
            response = await post.encrypted(wecom_side.ours(text_xml("zhenglihua", words, 51 + i)))
            outer = ET.fromstring(response.text)
            replies.append(crypto.decrypt_message(response.text, outer.findtext("MsgSignature"),
                                                  outer.findtext("TimeStamp"), outer.findtext("Nonce")))
        await channel.stop()
    listing, thread = (parsed(r) for r in replies)
    for root in (listing, thread):
        assert root.findtext("MsgType") == "text" and root.findtext("ToUserName") == "zhenglihua"
    assert INJECTION[:20] in (listing.findtext("Content") or "")
    assert INJECTION in (thread.findtext("Content") or "")  # the words exactly as the family wrote them


def test_cdata_reads_back_exactly_whatever_the_text() -> None:
    for text in ("]]>", "a]]>b]]>", "]]]]>>", "<![CDATA[x]]>", "控制\x01字符", "plain"):
        root = ET.fromstring(text_reply("u", "gh", text))
        assert root.findtext("Content") == text.replace("\x01", "")
        assert [c.tag for c in root] == ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content"]
    assert cdata("]]>") == "<![CDATA[]]]]><![CDATA[>]]>"
