"""A volunteer who first links their WeCom account late in the evening is not sent the morning's
digest at once (issue 21): it waits for the end of quiet hours, then expires as stale."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time

import pytest
from sqlalchemy import select
from wechatpy.enterprise import WeChatCrypto

from bot.app import App
from bot.care.reminders import plan_reminders
from dialogs.services import FixedClock
from storage.models import OutboxMessage, Person
from tests import test_wecom as wecom_side
from tests.conftest import SHANGHAI, TEST_DATA_KEY
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.wechat_side import Poster, live_http, text_xml

DAY = date(2026, 11, 20)


@pytest.fixture(autouse=True)
def _data_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMLINE_DATA_KEY", TEST_DATA_KEY)


@pytest.fixture
def api() -> Iterator[FakeWeChatAPI]:
    fake = FakeWeChatAPI().start()
    yield fake
    fake.close()


def local(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


async def test_linking_at_23_10_does_not_bring_the_morning_digest(
        county: App, clock: FixedClock, api: FakeWeChatAPI) -> None:
    clock.set(local(8, 0))
    assert (await plan_reminders(county, local(8, 0))).digests > 0
    with county.db.session() as session:
        volunteer = session.scalar(select(Person.id).where(Person.phone == "10000000001"))
        digest = session.scalar(select(OutboxMessage).where(
            OutboxMessage.idempotency_key == f"digest:{volunteer}:{DAY.isoformat()}"))
        assert digest is not None and digest.channel == "none"  # 林晓燕 has no address yet
    clock.set(local(23, 10))
    channel = wecom_side.configure(county, api)
    api.mobiles["linxiaoyan"] = "10000000001"  # linked by the mobile WeCom holds for her
    crypto = WeChatCrypto(wecom_side.TOKEN, wecom_side.AES_KEY, wecom_side.CORP_ID)
    async with live_http(channel.routes()) as client:
        post = Poster(client, "/wecom", wecom_side.TOKEN, crypto, wecom=True)
        hello = post.open_reply(await post.encrypted(wecom_side.ours(text_xml("linxiaoyan", "你好", 1))))
        await channel.stop()
    assert "林晓燕" in hello["Content"] and "早上好" not in hello["Content"]
    with county.db.session() as session:
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.id == digest.id))
    assert row is not None and row.channel == "wecom" and row.address == "linxiaoyan"
    # not due before the morning; by then the next digest is due and this one is stale
    assert row.next_attempt_at >= local(8, 0, date(2026, 11, 21))
    assert row.expires_at is not None and row.next_attempt_at >= row.expires_at
    assert not [c for c in api.sent("message/send") if "早上好" in c.body["text"]["content"]]
