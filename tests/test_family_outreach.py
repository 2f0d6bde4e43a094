"""Family outreach in chat: enrolment with consent, preferences, 退订/订阅, and the line back to the
volunteer (replies, call requests, escalation to the coordinator)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.care.family_line import family_messages_job
from bot.cli import main as cli_main
from dialogs.services import FixedClock
from storage.invites import create_invite
from storage.models import (
    AuditEntry,
    ChannelAddress,
    Consent,
    FamilyMessage,
    Household,
    HouseholdMember,
    OutboxMessage,
    OutboxStatus,
    Person,
    Preference,
    Task,
    Visit,
)
from tests.chat import Chat

TG = "telegram"


def family_code(app: App, household: str = "QX001") -> str:
    with app.db.session() as session:
        hid = session.scalar(select(Household.id).where(Household.code == household))
        return create_invite(session, role="family", now=app.services.now(), ttl=timedelta(days=14),
                             household_id=hid)


def person_named(app: App, name: str) -> Person:
    with app.db.session() as session:
        person = session.scalar(select(Person).where(Person.name == name))
        assert person is not None
        return person


def outbox_to(app: App, person: Person, kind: str | None = None) -> list[OutboxMessage]:
    with app.db.session() as session:
        query = select(OutboxMessage).where(OutboxMessage.person_id == person.id,
                                            OutboxMessage.kind != "reply")
        if kind:
            query = query.where(OutboxMessage.kind == kind)
        return list(session.scalars(query.order_by(OutboxMessage.id)))


async def enrol(app: App, address: str, *answers: str, household: str = "QX001") -> Chat:
    """A family member opens the bot with a family invite and answers the consent questions."""
    chat = Chat(app, address, channel=TG)
    await chat.say("/start", start_payload=family_code(app, household))
    for answer in answers:
        await chat.say(answer)
    return chat


async def test_a_mother_enrols_with_a_family_code_and_agrees(county: App, clock: FixedClock) -> None:
    chat = Chat(county, "tg-mother", channel=TG)
    reply = await chat.say("/start", start_payload=family_code(county))
    assert "您是哪一位" in reply and "王德福（父亲）" in reply and "李桂芳（母亲）" in reply
    assert "请确认：您是李桂芳" in await chat.say("李桂芳（母亲）")
    consent_text = await chat.say("确认")
    # plain words: who sends, what, how often, when, how to stop — and nothing saved yet
    for words in ("林晓燕", "逢年过节", "十来条", "21:00", "退订", "清明"):
        assert words in consent_text
    me = person_named(county, "李桂芳")
    with county.db.session() as session:
        assert session.scalar(select(Consent).where(Consent.person_id == me.id)) is None
    assert "逢年过节" in await chat.say("1")
    assert "生日" in await chat.say("愿意")
    mothers = await chat.say("1")
    assert "母亲节" in mothers and "不好过" in mothers and "那天不用发" in mothers and "父亲节" not in mothers
    assert "活动" in await chat.say("那天不用发")
    summary = await chat.say("2")
    assert "节日问候：收" in summary and "母亲节问候：不收" in summary and "活动邀请：不收" in summary
    assert "谢谢您" in await chat.say("可以")
    with county.db.session() as session:
        consent = session.scalar(select(Consent).where(Consent.person_id == me.id))
        assert consent is not None and consent.channel == TG and consent.wording_version == "2026-11"
        assert consent.given_at == clock.now() and consent.recorded_by_id is None
        pref = session.get(Preference, me.id)
        assert pref is not None and pref.festivals and pref.own_birthday and not pref.mothers_day
        assert not pref.activities and pref.channel == TG and pref.stopped_at is None
        address = session.scalar(select(ChannelAddress).where(ChannelAddress.address == "tg-mother"))
        assert address is not None and address.person_id == me.id  # linked to the household member
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.entity == "consent")) == 1


async def test_declining_saves_no_consent_and_says_how_to_change_mind(county: App) -> None:
    chat = await enrol(county, "tg-no", "王德福（父亲）", "确认")
    reply = await chat.say("先不要")
    assert "不会给您发消息" in reply and "订阅" in reply
    me = person_named(county, "王德福")
    with county.db.session() as session:
        assert session.scalar(select(Consent).where(Consent.person_id == me.id)) is None
    assert "您愿意接收吗" in await chat.say("订阅")  # 订阅 asks again, from the start


async def test_a_new_member_joins_the_household(county: App) -> None:
    chat = Chat(county, "tg-grandson", channel=TG)
    await chat.say("/start", start_payload=family_code(county, "QX002"))
    assert "姓名" in await chat.say("都不是，我是家里其他人")
    assert "哪一位" in await chat.say("陈小明")
    assert "请确认：您是陈小明" in await chat.say("孙辈")
    consent = await chat.say("1")
    assert "您愿意接收吗" in consent
    await chat.script("1", "1", "1")  # festivals, activities (no birthday known, no parents' day)
    assert "谢谢您" in await chat.say("1")
    with county.db.session() as session:
        person = session.scalar(select(Person).where(Person.name == "陈小明"))
        assert person is not None and person.role == "family"
        member = session.scalar(select(HouseholdMember).where(HouseholdMember.person_id == person.id))
        household = session.get(Household, member.household_id) if member else None
        assert member is not None and member.relation == "grandchild" and household is not None
        assert household.code == "QX002"


async def test_following_the_official_account_asks_for_the_family_code(county: App) -> None:
    chat = Chat(county, "wx-openid-1", channel="wechat")
    reply = await chat.say("", event="subscribe", message_id="wx-openid-1:1")
    assert "欢迎关注" in reply and "邀请码" in reply and "志愿者" in reply
    assert "您是哪一位" in await chat.say(family_code(county))


async def test_scanning_a_code_while_following_starts_with_that_code(county: App) -> None:
    chat = Chat(county, "wx-openid-2", channel="wechat")
    reply = await chat.say("", event="subscribe", start_payload=family_code(county, "QX002"),
                           message_id="wx-openid-2:1")
    assert "欢迎关注" in reply and "您是哪一位" in reply and "陈秀珍（母亲）" in reply


async def test_stop_from_anywhere_and_resume(county: App, clock: FixedClock) -> None:
    chat = await enrol(county, "tg-stop", "王德福（父亲）", "确认", "1", "1", "1", "1", "1", "1")
    me = person_named(county, "王德福")
    with county.db.session() as session:  # a greeting already waiting for the morning
        session.add(OutboxMessage(idempotency_key="greeting:x", channel=TG, address="tg-stop",
                                  person_id=me.id, kind="greeting", payload={"text": "…"},
                                  created_at=clock.now(), next_attempt_at=clock.now() + timedelta(hours=1)))
    await chat.say("设置")  # in the middle of another dialog…
    reply = await chat.say("ＴＤ")  # …full-width letters, upper case: still the stop word
    assert "已经停止" in reply and "订阅" in reply and "林晓燕" in reply
    with county.db.session() as session:
        pref = session.get(Preference, me.id)
        assert pref is not None and pref.stopped_at == clock.now()
        waiting = session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == "greeting:x"))
        assert waiting is not None and waiting.status == OutboxStatus.FAILED
    volunteer = person_named(county, "林晓燕")
    [notice] = outbox_to(county, volunteer, "notice")
    assert "王德福" in notice.payload["text"] and "退订" in notice.payload["text"]
    assert "之前已经停止" in await chat.say("stop")  # repeating it is harmless
    assert "要恢复接收吗" in await chat.say("订阅")
    assert "已经恢复" in await chat.say("恢复接收")
    with county.db.session() as session:
        pref = session.get(Preference, me.id)
        assert pref is not None and pref.stopped_at is None


async def test_a_newcomer_saying_stop_is_told_nothing_is_sent(county: App) -> None:
    chat = Chat(county, "tg-stranger", channel=TG)
    assert "没有给您发任何消息" in await chat.say("退订")


async def test_consent_recorded_in_person_is_confirmed_on_first_contact(county: App, volunteer: Chat) -> None:
    await volunteer.say("代登记同意")
    assert "替哪一位" in await volunteer.say("QX002 陈秀珍（桃园村）")
    assert "念给陈秀珍听" in await volunteer.say("1")
    assert "陈秀珍平时怎么收消息" in await volunteer.say("对方同意了")
    assert "陈秀珍愿意收到吗" in await volunteer.say("1")  # her own chat app
    await volunteer.script("1", "1")  # festivals, birthday
    assert "请轻声问" in volunteer.transcript[-1]["text"]  # Mother's Day, asked gently
    await volunteer.script("2", "2")  # no Mother's Day, no activities
    assert "第一次在暖心里联系时" in await volunteer.say("保存")
    mother = person_named(county, "陈秀珍")
    with county.db.session() as session:
        consent = session.scalar(select(Consent).where(Consent.person_id == mother.id))
        helper = person_named(county, "林晓燕")
        assert consent is not None and consent.recorded_by_id == helper.id
        assert consent.channel == "in_person" and consent.confirmed_at is None
    chat = Chat(county, "tg-chen", channel=TG)
    await chat.say("/start", start_payload=family_code(county, "QX002"))
    await chat.say("陈秀珍（母亲）")
    reply = await chat.say("确认")
    assert "林晓燕在11月20日和您当面说过" in reply and "母亲节问候：不收" in reply
    assert "谢谢您" in await chat.say("对，我同意")
    with county.db.session() as session:
        consent = session.scalar(select(Consent).where(Consent.person_id == mother.id))
        assert consent is not None and consent.confirmed_at is not None and consent.withdrawn_at is None


async def test_a_family_refusing_a_proxy_consent_withdraws_it(county: App, volunteer: Chat) -> None:
    await volunteer.script("代登记同意", "QX002 陈秀珍（桃园村）", "1", "对方同意了", "1", "1", "1", "2", "2", "保存")
    chat = Chat(county, "tg-chen2", channel=TG)
    await chat.say("/start", start_payload=family_code(county, "QX002"))
    await chat.script("陈秀珍（母亲）", "确认")
    assert "不会给您发消息" in await chat.say("不同意")
    with county.db.session() as session:
        consent = session.scalar(select(Consent))
        assert consent is not None and consent.withdrawn_at is not None


async def test_a_familys_words_reach_the_volunteer_and_the_reply_comes_back(county: App, clock: FixedClock) -> None:
    chat = await enrol(county, "tg-words", "李桂芳（母亲）", "确认", "1", "1", "1", "1", "2", "可以")
    reply = await chat.say("最近腿疼，晚上睡不好。")
    assert "已经转给林晓燕" in reply
    mother = person_named(county, "李桂芳")
    volunteer_person = person_named(county, "林晓燕")
    with county.db.session() as session:
        [message] = session.scalars(select(FamilyMessage)).all()
        assert message.text == "最近腿疼，晚上睡不好。" and message.person_id == mother.id
        assert message.forwarded_to_id == volunteer_person.id and not message.wants_call
    [forward] = outbox_to(county, volunteer_person, "family_message")
    assert "QX001" in forward.payload["text"] and "李阿姨（李桂芳）" in forward.payload["text"]
    assert "腿疼" in forward.payload["text"]
    # the volunteer presses 回复 on that message, late in the evening
    clock.set(clock.now().replace(hour=12, minute=50))  # 20:50 Shanghai
    vol = Chat(county, "10000000001")
    await vol._link()
    token = forward.payload["options"][0]["token"]
    thread = await vol.say("", option_token=token)
    assert "腿疼" in thread and "李阿姨" in thread
    confirm = await vol.say("李阿姨，明天上午我带血压计过来看您。")
    assert "晚上不打扰" in confirm
    clock.advance(minutes=15)  # 21:05 Shanghai: quiet hours have begun
    assert "已发给李阿姨" in await vol.say("发送")
    [answer] = outbox_to(county, mother, "family_reply")
    assert "林晓燕回复您" in answer.payload["text"] and answer.address == "tg-words"
    local_due = county.services.local(answer.next_attempt_at)
    assert local_due.hour == 8 and local_due.date() == county.services.today() + timedelta(days=1)
    with county.db.session() as session:
        message = session.scalar(select(FamilyMessage))
        assert message is not None and message.answered_at is not None and message.answer_kind == "reply"
        assert message.answered_by_id == volunteer_person.id
        visit = session.scalar(select(Visit).where(Visit.source == "reply"))
        assert visit is not None and visit.kind == "message" and visit.volunteer_id == volunteer_person.id


async def test_call_me_makes_a_call_task_and_a_recorded_call_answers_it(county: App, clock: FixedClock) -> None:
    chat = await enrol(county, "tg-call", "王德福（父亲）", "确认", "先不要")  # no consent: still heard
    assert "会尽快给您打电话" in await chat.say("我想聊聊")
    father = person_named(county, "王德福")
    with county.db.session() as session:
        task = session.scalar(select(Task).where(Task.kind == "call_family"))
        message = session.scalar(select(FamilyMessage))
        assert task is not None and message is not None and message.wants_call
        assert task.assignee_id == person_named(county, "林晓燕").id and task.done_at is None
    # the volunteer calls and records it with the visit dialog, not through the reply
    clock.advance(hours=2)
    vol = Chat(county, "10000000001")
    await vol.script("走访记录", "1", "1", "2", "1", "1", "1", "无", "无", "2")
    assert "已保存" in await vol.say("1")
    result = await family_messages_job(county, clock.now())
    assert result == {"answered": 1, "escalated": 0}
    with county.db.session() as session:
        message = session.scalar(select(FamilyMessage))
        task = session.scalar(select(Task).where(Task.kind == "call_family"))
        assert message is not None and message.answer_kind == "visit" and task is not None and task.done_at
    clock.advance(days=3)
    assert (await family_messages_job(county, clock.now()))["escalated"] == 0
    assert outbox_to(county, father, "escalation") == []


async def test_an_unanswered_message_goes_to_the_coordinator_once(county: App, clock: FixedClock) -> None:
    chat = await enrol(county, "tg-esc", "王德福（父亲）", "确认", "先不要")
    await chat.say("低保的事情一直没人管")
    coordinator = person_named(county, "郑丽华")
    clock.advance(hours=23)
    assert (await family_messages_job(county, clock.now()))["escalated"] == 0
    clock.advance(hours=2)
    assert (await family_messages_job(county, clock.now()))["escalated"] == 1
    assert (await family_messages_job(county, clock.now()))["escalated"] == 0  # once
    [alert] = outbox_to(county, coordinator, "escalation")
    assert "低保" in alert.payload["text"] and "QX001" in alert.payload["text"] and "林晓燕" in alert.payload["text"]
    # the coordinator answers from the alert: it is in their township's scope
    coord = Chat(county, "10000000101")
    await coord._link()
    await coord.say("", option_token=alert.payload["options"][0]["token"])
    await coord.say("我已经打电话联系了")
    assert "已记录" in await coord.say("保存")
    with county.db.session() as session:
        message = session.scalar(select(FamilyMessage))
        assert message is not None and message.answer_kind == "call" and message.answered_by_id == coordinator.id


async def test_a_voice_message_is_kept_and_the_volunteer_asked_to_call(county: App) -> None:
    chat = await enrol(county, "wx-voice", "王德福（父亲）", "确认", "先不要")
    chat.channel = "wechat"  # the same person, now writing from the Official Account
    with county.db.session() as session:
        father = session.scalar(select(Person).where(Person.name == "王德福"))
        assert father is not None
        session.add(ChannelAddress(person_id=father.id, channel="wechat", address="wx-voice"))
    chat._linked = True
    assert "已经告诉林晓燕" in await chat.say("", event="voice", message_id="m-1")
    with county.db.session() as session:
        message = session.scalar(select(FamilyMessage))
        assert message is not None and "语音" in message.text and message.channel == "wechat"


async def test_preferences_can_be_changed_and_stopped(county: App) -> None:
    chat = await enrol(county, "tg-pref", "李桂芳（母亲）", "确认", "1", "1", "1", "2", "2", "可以")
    shown = await chat.say("设置")
    assert "节日问候：收" in shown and "母亲节问候：不收" in shown
    await chat.script("修改设置", "1", "1", "愿意收到问候", "2")
    assert "母亲节问候：收" in chat.transcript[-1]["text"]
    assert "改好了" in await chat.say("保存")
    with county.db.session() as session:
        pref = session.get(Preference, person_named(county, "李桂芳").id)
        assert pref is not None and pref.mothers_day
    await chat.say("设置")
    assert "已经停止" in await chat.say("停止接收所有消息")


def test_invite_prints_the_telegram_link_and_writes_a_qr(county: App, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WARMLINE_TELEGRAM_BOT_USERNAME", "warmline_demo_bot")
    monkeypatch.setenv("WARMLINE_DATA_KEY", "dGVzdC1vbmx5LWtleS1mb3Itd2FybWxpbmUtdGVzdHM=")
    assert cli_main(["--db", county.settings.database_url, "invite", "--role", "family",
                     "--household", "QX002"]) == 0
    out, err = capsys.readouterr()
    code = out.strip()
    assert f"https://t.me/warmline_demo_bot?start={code}" in err
    picture = tmp_path / f"invite-{code}.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with county.db.session() as session:
        from storage.models import InviteCode

        invite = session.scalar(select(InviteCode))
        assert invite is not None and invite.role == "family" and invite.household_id is not None
    assert cli_main(["--db", county.settings.database_url, "invite", "--role", "volunteer",
                     "--township", "清溪镇", "--qr", str(tmp_path / "v.png")]) == 0
    assert (tmp_path / "v.png").exists()


async def test_words_written_instead_of_a_choice_are_kept_and_forwarded(county: App) -> None:
    chat = await enrol(county, "tg-words2", "王德福（父亲）", "确认")
    reply = await chat.say("孩子走了以后，过节最难熬，谁的消息都不想看。")
    assert reply.startswith("收到了，已经转给林晓燕") and "1 或 2" in reply and "您愿意接收吗" in reply
    with county.db.session() as session:
        message = session.scalar(select(FamilyMessage))
        assert message is not None and message.text.startswith("孩子走了以后")
        assert session.scalar(select(Consent)) is None  # and nothing was agreed on their behalf
    assert outbox_to(county, person_named(county, "林晓燕"), "family_message")
    assert "不会给您发消息" in await chat.say("2")
