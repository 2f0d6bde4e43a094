"""`warmline run` with both WeChat channels configured: the one HTTP app serves /wechat and /wecom
beside /healthz, and the delivery worker sends queued family messages through the WeChat sender."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import httpx
from sqlalchemy import select

from bot.app import App
from bot.commands.run import serve
from storage.models import ChannelAddress, OutboxMessage, OutboxStatus, Person
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.wechat_side import sign


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_warmline_run_serves_both_webhooks_and_delivers_through_wechat(county: App) -> None:
    api = FakeWeChatAPI().start()
    port = free_port()
    county.settings.env.update({
        "WARMLINE_HTTP_PORT": str(port),
        "WARMLINE_WECHAT_APPID": "wx7a3c0f0e1d2b4c5d", "WARMLINE_WECHAT_SECRET": "s",
        "WARMLINE_WECHAT_TOKEN": "oa-token", "WARMLINE_WECHAT_API_BASE": api.base,
        "WARMLINE_WECOM_CORP_ID": "wx5823bf96d3bd56c7", "WARMLINE_WECOM_SECRET": "s",
        "WARMLINE_WECOM_AGENT_ID": "218", "WARMLINE_WECOM_TOKEN": "QDG6eK",
        "WARMLINE_WECOM_AES_KEY": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "WARMLINE_WECOM_API_BASE": api.base})
    now = county.services.now()
    with county.db.session() as session:
        family = session.scalar(select(Person).where(Person.name == "陈秀珍"))
        assert family is not None
        session.add(ChannelAddress(person_id=family.id, channel="wechat", address="oChenXiuzhen000000000000001",
                                   created_at=now, last_inbound_at=now - timedelta(hours=3)))
        session.add(OutboxMessage(idempotency_key="greeting:run-test", channel="wechat",
                                  address="oChenXiuzhen000000000000001", person_id=family.id,
                                  kind="greeting", payload={"text": "陈阿姨，天冷了，注意保暖。", "options": []},
                                  status=OutboxStatus.QUEUED, created_at=now, next_attempt_at=now))
    stop = asyncio.Event()
    running = asyncio.create_task(serve(county, scheduler=False, stop=stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            for _ in range(200):
                try:
                    health = await client.get("/healthz")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.02)
            assert health.json() == {"status": "ok"}
            echo = await client.get("/wechat", params={"signature": sign("oa-token", "1", "2"),
                                                       "timestamp": "1", "nonce": "2", "echostr": "42"})
            assert echo.text == "42"
            wecom = await client.get("/wecom", params={
                "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "timestamp": "1409659589",
                "nonce": "263014780",
                "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="})
            assert wecom.text == "1616140317555161061"
        for _ in range(300):
            if api.sent("message/custom/send"):
                break
            await asyncio.sleep(0.02)
        [call] = api.sent("message/custom/send")
        assert call.body["text"]["content"] == "陈阿姨，天冷了，注意保暖。"
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)
        api.close()
    with county.db.session() as session:
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == "greeting:run-test"))
        assert row is not None and row.status == OutboxStatus.SENT
