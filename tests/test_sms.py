"""SMS for families with a basic phone: the real SMS channel against a fake Alibaba Cloud API.

The fake API on 127.0.0.1 checks every request's HMAC-SHA1 signature, nonce and timestamp with
its own code, answers with the documented bodies, and pushes receipts and replies to the live
HTTP app as Alibaba does. Greetings are planned by the real greeting job on a fixed clock and
sent by the real delivery worker; what the fake accepted is what families got.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.care.calendar import occasions_in
from bot.care.greetings import greetings_job
from bot.care.occasions import NAMES
from bot.care.policy import Policy
from bot.channels import sms
from bot.channels.sms import SmsChannel
from bot.channels.sms.aliyun import signature
from bot.delivery.base import SendRequest
from bot.delivery.worker import DeliveryWorker
from bot.reports.periods import parse_period
from bot.reports.service import make_report
from dialogs.services import FixedClock
from domain.call_tasks import CALL_TASK
from storage.models import (
    ChannelAddress,
    Consent,
    DeceasedChild,
    FamilyMessage,
    Greeting,
    Household,
    OutboxMessage,
    OutboxStatus,
    Person,
    Preference,
    Task,
    Visit,
)
from tests.chat import Chat
from tests.fakes.sms_provider import (
    KEY_ID,
    KEY_SECRET,
    SIGN_NAME,
    TC_APP_ID,
    TC_SECRET_ID,
    TC_SECRET_KEY,
    FakeAliyunSms,
    FakeTencentSms,
    expected_signature,
)
from tests.wechat_side import live_http

SHANGHAI = ZoneInfo("Asia/Shanghai")
YEAR = 2027
TOKEN = "cb-token-fictional-0123456789abcdef"
PHONES = {"李桂芳": "13900000001", "杨淑华": "13900000002"}
GREETING = "SMS_100000001"
STOPPED = "SMS_100000002"
RECEIVED = "SMS_100000003"


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), SHANGHAI)


@pytest.fixture
def provider() -> Iterator[FakeAliyunSms]:
    fake = FakeAliyunSms(templates={GREETING: {"name", "occasion", "volunteer"}, STOPPED: {"volunteer"},
                                    RECEIVED: {"volunteer"}}, per_number_per_minute=1000).start()
    yield fake
    fake.close()


def configure(app: App, provider: FakeAliyunSms, *, templates: dict | None = None,
              secret: str = KEY_SECRET) -> SmsChannel:
    app.settings.env.update({
        "WARMLINE_SMS_PROVIDER": "aliyun", "WARMLINE_SMS_ACCESS_KEY_ID": KEY_ID,
        "WARMLINE_SMS_ACCESS_KEY_SECRET": secret, "WARMLINE_SMS_SIGN_NAME": SIGN_NAME,
        "WARMLINE_SMS_API_BASE": provider.base, "WARMLINE_SMS_CALLBACK_TOKEN": TOKEN})
    section = app.settings.raw.setdefault("sms", {})
    section["per_recipient_interval_seconds"] = 0.0  # the clock is simulated; the limits count in it
    section["templates"] = templates if templates is not None else {
        "greeting": {"template_code": GREETING,
                     "params": {"name": "{address}", "occasion": "{occasion}", "volunteer": "{volunteer}"}},
        "stopped": {"template_code": STOPPED, "params": {"volunteer": "{volunteer}"}},
        "received": {"template_code": RECEIVED, "params": {"volunteer": "{volunteer}"}},
    }
    channel = sms.from_app(app)
    assert channel is not None
    return channel


@pytest.fixture
async def channel(county: App, provider: FakeAliyunSms) -> AsyncIterator[SmsChannel]:
    found = configure(county, provider)
    yield found
    await found.stop()


def enrol_by_sms(app: App, name: str, *, festivals: bool = True) -> int:
    """What the volunteer's 代家属登记同意 with 短信 leaves behind (the dialog is tested apart)."""
    now = app.services.now()
    with app.db.session() as session:
        person = session.scalar(select(Person).where(Person.name == name))
        volunteer = session.scalar(select(Person).where(Person.phone == "10000000001"))
        assert person is not None and volunteer is not None
        person.phone = PHONES[name]
        session.add(ChannelAddress(person_id=person.id, channel="sms", address=PHONES[name], created_at=now))
        session.add(Preference(person_id=person.id, festivals=festivals, channel="sms", updated_at=now))
        session.add(Consent(person_id=person.id, channel="sms", wording_version="2026-11", given_at=now,
                            recorded_by_id=volunteer.id, confirmed_at=now))
        return person.id


def count(app: App, model: type, *where: object) -> int:
    with app.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def greeting_request(app: App, person_id: int, occasion: str, *, outbox_id: int = 4242) -> SendRequest:
    return SendRequest(outbox_id=outbox_id, channel="sms", address=PHONES["李桂芳"], kind="greeting",
                       payload={"text": "李阿姨，中秋到了……", "options": [], "occasion": occasion,
                                "address": "李阿姨", "volunteer": "林晓燕"}, person_id=person_id)


# ------------------------------------------------------------------------- signing

def test_our_signature_is_the_one_the_provider_computes() -> None:
    params = {"AccessKeyId": KEY_ID, "Action": "SendSms", "PhoneNumbers": "13900000001",
              "SignName": SIGN_NAME, "TemplateParam": '{"name":"李阿姨 *~"}', "Timestamp": "2027-01-01T01:00:00Z"}
    assert signature(KEY_SECRET, "POST", params) == expected_signature(KEY_SECRET, params)
    assert signature("another", "POST", params) != expected_signature(KEY_SECRET, params)


# ------------------------------------------------------------------------- a year

async def test_a_year_of_sms_greetings_follows_consent_stop_and_hard_days(
        county: App, clock: FixedClock, provider: FakeAliyunSms, channel: SmsChannel) -> None:
    """Two families with only a basic phone: one stops by TD on 1 June; the other's child died
    on a Mid-Autumn day. Exactly the greetings their consent allows arrive, never on a hard day."""
    occ = {o.key: o.day for o in occasions_in(YEAR)}
    clock.set(local(date(YEAR, 1, 1), 8, 0))
    ids = {name: enrol_by_sms(county, name) for name in PHONES}
    with county.db.session() as session:
        child = session.scalar(select(DeceasedChild).join(Household).where(Household.code == "BY002"))
        assert child is not None
        child.death_date = occ["mid_autumn"].replace(year=2015)
    worker = DeliveryWorker(county.db, {"sms": channel.sender()}, now=county.services.now)
    stop_day = date(YEAR, 6, 1)
    sent_at: list[datetime] = []
    async with live_http(channel.routes()) as http:
        day = date(YEAR, 1, 1)
        while day.year == YEAR:
            if day == stop_day:
                clock.set(local(day, 10, 0))
                answer = await FakeAliyunSms.push(http, f"/sms/up?token={TOKEN}",
                                                  provider.up_body(PHONES["李桂芳"], "TD", 7001))
                assert answer.status_code == 200 and answer.json()["code"] == 0
            clock.set(local(day, 9, 0))
            if (await greetings_job(county, clock.now()))["planned"]:
                clock.set(local(day, 9, 1))
                before = len(provider.accepted)
                await worker.run_once()
                sent_at += [clock.now()] * (len(provider.accepted) - before)
                clock.set(local(day, 9, 2))
                await greetings_job(county, clock.now())  # delivered greetings become contacts
            day += timedelta(days=1)

    festivals = {k: d for k, d in occ.items() if k in Policy.default().holiday_occasions}
    names = {v: k for k, v in NAMES.items()}  # the template variable carries the Chinese name
    got_keys = {(a.phone, names[a.params["occasion"]]) for a in provider.accepted if a.template_code == GREETING}
    expected = {(PHONES["杨淑华"], k) for k in festivals if k != "mid_autumn"}
    expected |= {(PHONES["李桂芳"], k) for k, d in festivals.items() if d < stop_day}
    assert got_keys == expected
    greetings_sent = [a for a in provider.accepted if a.template_code == GREETING]
    assert len(greetings_sent) == len(expected)  # never twice
    assert {a.params["name"] for a in greetings_sent} == {"李阿姨", "杨阿姨"}
    assert {a.params["volunteer"] for a in greetings_sent} == {"林晓燕", "马春兰"}
    assert all(time(8) <= t.astimezone(SHANGHAI).time() < time(21) for t in sent_at)
    # the stop was answered with the approved "stopped" template, naming the volunteer
    stops = [a for a in provider.accepted if a.template_code == STOPPED]
    assert [(a.phone, a.params["volunteer"]) for a in stops] == [(PHONES["李桂芳"], "林晓燕")]
    with county.db.session() as session:
        preference = session.get(Preference, ids["李桂芳"])
        assert preference is not None and preference.stopped_at is not None
        # every delivered SMS greeting is a contact, and the report counts it
        visits = session.scalar(select(func.count()).select_from(Visit).where(Visit.source == "greeting"))
        assert visits == len(expected)
        report = make_report(session, county.settings, period=parse_period(str(YEAR)),
                             now=local(date(YEAR, 12, 31), 12))
    holidays = report.section("holidays").table("holidays").row(level="合计")
    assert holidays["greetings"] == len(expected)


# ---------------------------------------------------------------- templates, limits

async def test_a_greeting_without_an_approved_template_becomes_a_call(
        county: App, provider: FakeAliyunSms) -> None:
    channel = configure(county, provider, templates={
        "greeting_mid_autumn": {"template_code": GREETING,
                                "params": {"name": "{address}", "occasion": "{occasion}", "volunteer": "{volunteer}"}},
        "greeting": {"template_code": "", "params": {}},  # applied for, not approved yet
    })
    pid = enrol_by_sms(county, "李桂芳")
    try:
        result = await channel.sender().send(greeting_request(county, pid, "double_ninth"))
        assert not result.ok and result.permanent and not result.unreachable
        assert "no approved template" in (result.error or "")
        assert provider.accepted == []
        assert count(county, Task, Task.kind == CALL_TASK) == 1
        ok = await channel.sender().send(greeting_request(county, pid, "mid_autumn"))
        assert ok.ok and provider.accepted[0].params == {"name": "李阿姨", "occasion": "中秋", "volunteer": "林晓燕"}
    finally:
        await channel.stop()


async def test_nothing_goes_in_quiet_hours(county: App, clock: FixedClock, provider: FakeAliyunSms,
                                           channel: SmsChannel) -> None:
    pid = enrol_by_sms(county, "李桂芳")
    clock.set(local(date(YEAR, 9, 10), 22, 30))
    result = await channel.sender().send(greeting_request(county, pid, "mid_autumn"))
    assert not result.ok and result.retry_after == pytest.approx(9.5 * 3600)
    assert provider.accepted == []


async def test_per_number_limit_is_kept_before_the_provider_refuses(
        county: App, clock: FixedClock, provider: FakeAliyunSms, channel: SmsChannel) -> None:
    pid = enrol_by_sms(county, "李桂芳")
    clock.set(local(date(YEAR, 9, 10), 10, 0))
    with county.db.session() as session:  # one SMS went to this number 20 seconds ago
        session.add(OutboxMessage(idempotency_key="earlier", channel="sms", address=PHONES["李桂芳"],
                                  person_id=pid, kind="greeting", payload={"text": "x"},
                                  status=OutboxStatus.SENT, sent_at=clock.now() - timedelta(seconds=20)))
    result = await channel.sender().send(greeting_request(county, pid, "mid_autumn"))
    assert not result.ok and not result.permanent and result.retry_after == pytest.approx(40, abs=1)
    assert provider.accepted == []


@pytest.mark.parametrize(("code", "retry", "unreachable", "call"), [
    ("isv.MOBILE_NUMBER_ILLEGAL", False, True, False),
    ("isv.SMS_TEMPLATE_ILLEGAL", False, False, True),
    ("isv.BUSINESS_LIMIT_CONTROL", True, False, False),
    ("isv.AMOUNT_NOT_ENOUGH", True, False, False),
    ("Throttling.User", True, False, False),
])
async def test_provider_errors_are_classified(county: App, clock: FixedClock, provider: FakeAliyunSms,
                                              channel: SmsChannel, code: str, retry: bool,
                                              unreachable: bool, call: bool) -> None:
    pid = enrol_by_sms(county, "李桂芳")
    clock.set(local(date(YEAR, 9, 10), 10, 0))
    provider.force_code = code
    result = await channel.sender().send(greeting_request(county, pid, "mid_autumn"))
    assert not result.ok
    assert (not result.permanent) is retry and (result.retry_after or 0) > 0 if retry else result.permanent
    assert result.unreachable is unreachable
    assert code in (result.error or "")
    assert count(county, Task, Task.kind == CALL_TASK) == (1 if call else 0)


async def test_a_wrong_secret_is_refused_by_the_provider_and_never_retried(
        county: App, clock: FixedClock, provider: FakeAliyunSms) -> None:
    channel = configure(county, provider, secret="not-the-secret")
    pid = enrol_by_sms(county, "李桂芳")
    clock.set(local(date(YEAR, 9, 10), 10, 0))
    try:
        result = await channel.sender().send(greeting_request(county, pid, "mid_autumn"))
    finally:
        await channel.stop()
    assert result.permanent and "SignatureDoesNotMatch" in (result.error or "")
    assert provider.refused == ["SignatureDoesNotMatch"]


# --------------------------------------------------------------------- callbacks

async def _one_greeting_sent(county: App, clock: FixedClock, channel: SmsChannel) -> OutboxMessage:
    """Plan and send 中秋's greeting to 李桂芳 by SMS; its contact counted."""
    clock.set(local(occasions_day("mid_autumn"), 9, 0))
    assert (await greetings_job(county, clock.now()))["planned"] == 1
    clock.set(local(occasions_day("mid_autumn"), 9, 1))
    await DeliveryWorker(county.db, {"sms": channel.sender()}, now=county.services.now).run_once()
    clock.set(local(occasions_day("mid_autumn"), 9, 2))
    await greetings_job(county, clock.now())
    with county.db.session() as session:
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "greeting"))
        assert row is not None and row.status == OutboxStatus.SENT
        session.expunge(row)
        return row


def occasions_day(key: str) -> date:
    return next(o.day for o in occasions_in(YEAR) if o.key == key)


async def test_a_failed_receipt_unmakes_the_contact_and_asks_for_a_call(
        county: App, clock: FixedClock, provider: FakeAliyunSms, channel: SmsChannel) -> None:
    enrol_by_sms(county, "李桂芳")
    row = await _one_greeting_sent(county, clock, channel)
    assert count(county, Visit, Visit.source == "greeting") == 1
    accepted = provider.accepted[0]
    assert accepted.out_id == str(row.id)
    async with live_http(channel.routes()) as http:
        forged = await FakeAliyunSms.push(http, "/sms/report?token=guess", provider.report_body(accepted))
        assert forged.status_code == 403
        answer = await FakeAliyunSms.push(http, f"/sms/report?token={TOKEN}",
                                          provider.report_body(accepted, delivered=False, code="MN:0001"))
        assert answer.status_code == 200 and answer.json() == {"code": 0, "msg": "接收成功"}
        again = await FakeAliyunSms.push(http, f"/sms/report?token={TOKEN}",
                                         provider.report_body(accepted, delivered=False, code="MN:0001"))
        assert again.status_code == 200
        junk = await http.post(f"/sms/report?token={TOKEN}", content=b'{"not": "a list"}')
        assert junk.status_code == 400
    with county.db.session() as session:
        failed = session.get(OutboxMessage, row.id)
        assert failed is not None and failed.status == OutboxStatus.FAILED
        assert failed.last_error == "receipt: MN:0001"
        greeting = session.scalar(select(Greeting))
        assert greeting is not None and greeting.status == "failed" and greeting.visit_id is None
    assert count(county, Visit, Visit.source == "greeting") == 0
    assert count(county, Task, Task.kind == CALL_TASK) == 1  # once, though the receipt came twice


async def test_a_delivered_receipt_keeps_the_message_sent(
        county: App, clock: FixedClock, provider: FakeAliyunSms, channel: SmsChannel) -> None:
    enrol_by_sms(county, "李桂芳")
    row = await _one_greeting_sent(county, clock, channel)
    async with live_http(channel.routes()) as http:
        answer = await FakeAliyunSms.push(http, f"/sms/report?token={TOKEN}",
                                          provider.report_body(provider.accepted[0]))
    assert answer.status_code == 200
    with county.db.session() as session:
        kept = session.get(OutboxMessage, row.id)
        assert kept is not None and kept.status == OutboxStatus.SENT
    assert count(county, Visit, Visit.source == "greeting") == 1


async def test_words_by_sms_reach_the_volunteer_once(
        county: App, clock: FixedClock, provider: FakeAliyunSms, channel: SmsChannel) -> None:
    pid = enrol_by_sms(county, "李桂芳")
    clock.set(local(date(YEAR, 3, 3), 15, 0))
    async with live_http(channel.routes()) as http:
        body = provider.up_body("+86 139 0000 0001", "最近腿疼，想找人说说话", 5001)
        first = await FakeAliyunSms.push(http, f"/sms/up?token={TOKEN}", body)
        repeat = await FakeAliyunSms.push(http, f"/sms/up?token={TOKEN}", body)  # Alibaba re-pushes
        stranger = await FakeAliyunSms.push(http, f"/sms/up?token={TOKEN}",
                                            provider.up_body("13912345678", "你好", 5002))
    assert first.status_code == repeat.status_code == stranger.status_code == 200
    with county.db.session() as session:
        words = list(session.scalars(select(FamilyMessage)))
        assert [(w.person_id, w.channel) for w in words] == [(pid, "sms")]
        forwards = list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "family_message")))
        volunteer = session.scalar(select(Person).where(Person.phone == "10000000001"))
        assert volunteer is not None and [f.person_id for f in forwards] == [volunteer.id]
    # the family was answered with the approved "received" template
    assert [(a.template_code, a.phone) for a in provider.accepted] == [(RECEIVED, PHONES["李桂芳"])]


# ------------------------------------------------------------ a second provider

async def test_tencent_cloud_is_a_second_provider_behind_the_same_channel(
        county: App, clock: FixedClock) -> None:
    """Same channel, same rules: a greeting, a failed receipt, and 退订, in Tencent's formats."""
    fake = FakeTencentSms(templates={"1800001": 3, "1800002": 1}).start()
    county.settings.env.update({
        "WARMLINE_SMS_PROVIDER": "tencent", "WARMLINE_SMS_ACCESS_KEY_ID": TC_SECRET_ID,
        "WARMLINE_SMS_ACCESS_KEY_SECRET": TC_SECRET_KEY, "WARMLINE_SMS_SDK_APP_ID": TC_APP_ID,
        "WARMLINE_SMS_SIGN_NAME": SIGN_NAME, "WARMLINE_SMS_API_BASE": fake.base,
        "WARMLINE_SMS_CALLBACK_TOKEN": TOKEN})
    county.settings.raw.setdefault("sms", {})["templates"] = {
        "greeting": {"template_code": "1800001",
                     "params": {"1": "{address}", "2": "{occasion}", "3": "{volunteer}"}},
        "stopped": {"template_code": "1800002", "params": {"1": "{volunteer}"}}}
    channel = sms.from_app(county)
    assert channel is not None
    pid = enrol_by_sms(county, "李桂芳")
    try:
        clock.set(local(date(YEAR, 9, 10), 10, 0))
        assert (await channel.sender().send(greeting_request(county, pid, "mid_autumn", outbox_id=1))).ok
        assert fake.accepted[0].params == {"1": "李阿姨", "2": "中秋", "3": "林晓燕"}
        row = await _one_greeting_sent(county, clock, channel)
        async with live_http(channel.routes()) as http:
            answer = await http.post(f"/sms/report?token={TOKEN}",
                                     json=FakeTencentSms.report_body(fake.accepted[-1], delivered=False))
            assert answer.json() == {"result": 0, "errmsg": "OK"}
            stop = await http.post(f"/sms/up?token={TOKEN}",
                                   json=FakeTencentSms.reply_body(PHONES["李桂芳"], "退订", 1788000000))
            assert stop.status_code == 200
    finally:
        await channel.stop()
        fake.close()
    with county.db.session() as session:
        failed = session.get(OutboxMessage, row.id)
        assert failed is not None and failed.status == OutboxStatus.FAILED
        preference = session.get(Preference, pid)
        assert preference is not None and preference.stopped_at is not None
    assert [a.template_code for a in fake.accepted][-1] == "1800002"
    assert fake.refused == []


# ------------------------------------------------------------- consent in person

async def test_a_volunteer_records_sms_consent_and_the_card_shows_it(
        county: App, clock: FixedClock, provider: FakeAliyunSms) -> None:
    """代家属登记同意 with 短信: the number is checked, the consent stands, the family card says
    how greetings reach them, and the notice goes by the approved template in daytime."""
    templates = {"consent_notice": {"template_code": RECEIVED,
                                    "params": {"volunteer": "{volunteer}"}}}
    channel = configure(county, provider, templates=templates)
    volunteer = Chat(county, "10000000001")
    try:
        await volunteer.script("代登记同意", "1")
        assert "替哪一位" in volunteer.transcript[-1]["text"]
        await volunteer.script("李桂芳（母亲）", "对方同意了")
        assert "李桂芳平时怎么收消息" in volunteer.transcript[-1]["text"]
        assert "手机号" in await volunteer.say("只有普通手机：发短信")
        assert "11 位" in await volunteer.say("139 0000")  # too short: asked again, kindly
        reply = await volunteer.say("１３９-0000-0001")  # full-width digits and dashes
        assert "愿意收到吗" in reply
        await volunteer.script("1", "2", "2", "2")  # festivals only
        assert "用短信发到 13900000001" in volunteer.transcript[-1]["text"]
        assert "回复 TD" in await volunteer.say("保存")
        with county.db.session() as session:
            mother = session.scalar(select(Person).where(Person.name == "李桂芳"))
            assert mother is not None
            consent = session.scalar(select(Consent).where(Consent.person_id == mother.id))
            assert consent is not None and consent.channel == "sms" and consent.confirmed_at is not None
            address = session.scalar(select(ChannelAddress).where(ChannelAddress.person_id == mother.id))
            assert address is not None and (address.channel, address.address) == ("sms", "13900000001")
        await volunteer.script("菜单", "我的家庭")
        card = await volunteer.say("1")
        assert "问候方式：短信（139****0001）" in card
        # the notice waits for daytime, then goes as the approved template
        clock.set(local(date(2026, 11, 20), 22, 0))
        await DeliveryWorker(county.db, {"sms": channel.sender()}, now=county.services.now).run_once()
        assert provider.accepted == []
        clock.set(local(date(2026, 11, 21), 9, 0))
        await DeliveryWorker(county.db, {"sms": channel.sender()}, now=county.services.now).run_once()
        assert [(a.phone, a.params) for a in provider.accepted] == [("13900000001", {"volunteer": "林晓燕"})]
    finally:
        await channel.stop()
