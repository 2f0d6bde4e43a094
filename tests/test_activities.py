"""Activity broadcasts: a coordinator invites a township, people answer, the coordinator follows through.

A fictional crowd (a few hundred volunteers and family members with console, Telegram and
WeChat addresses) is added to the demo county, so scope, opt-in and per-channel counts are
checked against who was created, not against the code under test.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import App, build_app
from bot.care.activities import reminders_job, scheduled_sends_job
from bot.cli import main as cli_main
from bot.delivery.base import RateLimit, SendRequest, SendResult
from bot.delivery.worker import DeliveryWorker, WorkerSettings
from dialogs.engine.dialog import parse_action
from dialogs.services import FixedClock
from domain.invitations import SendWindow, record_rsvp
from storage.audience import AudienceNotAllowed, checked_audience, resolve_audience
from storage.models import (
    ActionToken,
    Activity,
    ChannelAddress,
    Consent,
    DeceasedChild,
    Household,
    HouseholdMember,
    Invitation,
    OutboxMessage,
    Person,
    Preference,
    Role,
    Township,
    Visit,
)
from tests.chat import Chat
from tests.conftest import SHANGHAI

CHANNELS = ("console", "telegram", "wechat")


@dataclass
class Crowd:
    """Who was created, by what they should receive."""

    township_volunteers: dict[int, str] = field(default_factory=dict)  # person id → channel
    other_township_volunteers: set[int] = field(default_factory=set)
    opted_in_families: dict[int, str] = field(default_factory=dict)
    not_reachable_families: set[int] = field(default_factory=set)  # not opted in, stopped, withdrawn
    other_township_families: set[int] = field(default_factory=set)
    addresses: dict[int, tuple[str, str]] = field(default_factory=dict)  # person → (channel, address)
    households: dict[int, int] = field(default_factory=dict)  # family person → household


@pytest.fixture
def crowd(county: App, clock: FixedClock) -> Crowd:
    """A small crowd for the answer and follow-through tests (fast)."""
    return make_crowd(county, clock, volunteers=15, others=3, families=20)


@pytest.fixture
def big_crowd(county: App, clock: FixedClock) -> Crowd:
    """A few hundred people: 240 + 20 volunteers and 110 family members."""
    return make_crowd(county, clock, volunteers=240, others=20, families=110)


def make_crowd(county: App, clock: FixedClock, *, volunteers: int, others: int, families: int) -> Crowd:
    """Volunteers of 清溪镇 on console, Telegram and WeChat in turn, some of 白云乡; families of
    清溪镇 of whom 60% opted in, 10% stopped, 10% withdrew consent, 20% never opted in; and a
    tenth more families in 白云乡, opted in. Everyone fictional (phones start with 100)."""
    now = clock.now()
    out = Crowd()
    serial = iter(range(1, 10_000))
    with county.db.session() as session:
        towns = {t.name: t.id for t in session.scalars(select(Township))}

        def person(name: str, role: str, town: str, channel: str | None) -> Person:
            n = next(serial)
            p = Person(name=f"{name}{n}", phone=f"1009{n:07d}", role=role, township_id=towns[town],
                       created_at=now)
            session.add(p)
            session.flush()
            if channel:
                address = f"{channel[:2]}-{n}"
                session.add(ChannelAddress(person_id=p.id, channel=channel, address=address,
                                           created_at=now))
                out.addresses[p.id] = (channel, address)
            return p

        for i in range(volunteers):
            p = person("志愿者", Role.VOLUNTEER, "清溪镇", CHANNELS[i % 3])
            out.township_volunteers[p.id] = CHANNELS[i % 3]
        for _ in range(others):
            out.other_township_volunteers.add(person("白云志愿者", Role.VOLUNTEER, "白云乡", "telegram").id)
        here = families * 10 // 11
        for i in range(families):
            town = "清溪镇" if i < here else "白云乡"
            channel = "wechat" if i % 3 else "telegram"
            household = Household(code=f"T{i:03d}", township_id=towns[town], created_at=now)
            session.add(household)
            session.flush()
            p = person("家人", Role.FAMILY, town, channel)
            session.add(HouseholdMember(household_id=household.id, person_id=p.id, relation="mother"))
            out.households[p.id] = household.id
            share = i * 10 // max(here, 1)
            kind = "other" if i >= here else ("in" if share < 6 else ("stopped" if share < 7 else
                                              "withdrawn" if share < 8 else "never"))
            if kind != "never":
                session.add(Preference(person_id=p.id, activities=True, updated_at=now,
                                       stopped_at=now if kind == "stopped" else None))
                session.add(Consent(person_id=p.id, household_id=household.id, channel=channel,
                                    wording_version="v1", given_at=now,
                                    withdrawn_at=now if kind == "withdrawn" else None))
            if kind == "in":
                out.opted_in_families[p.id] = channel
            elif kind == "other":
                out.other_township_families.add(p.id)
            else:
                out.not_reachable_families.add(p.id)
    return out


def rows(app: App, model: Any, *where: Any) -> list[Any]:
    with app.db.session() as session:
        return list(session.scalars(select(model).where(*where)))


def the_activity(app: App) -> Activity:
    [activity] = rows(app, Activity)
    return activity


async def create(chat: Chat, *, audience: str = "1", capacity: str = "不限", when: str = "11月25日 下午2点",
                 send: str = "现在发送", extra: tuple[str, ...] = ()) -> str:
    """Walk the create dialog: interest class, default title, the given audience, no message."""
    await chat.script("发布活动", "兴趣班", "1", when, "镇暖心驿站", capacity, audience, *extra, "无")
    return await chat.say(send)


def recipient(app: App, crowd: Crowd, person_id: int) -> Chat:
    channel, address = crowd.addresses[person_id]
    return Chat(app, address, channel=channel)


async def press(chat: Chat, app: App, label: str, kind: str = "invitation") -> str:
    """Press a button of the newest message of `kind` the person was sent, as their channel would."""
    [message] = rows(app, OutboxMessage, OutboxMessage.address == chat.address,
                     OutboxMessage.kind == kind)[-1:]
    token = next(o["token"] for o in message.payload["options"] if o["label"] == label)
    chat._linked = True  # the address already exists; pressing needs no phone link
    return await chat.say(option_token=token)


# ------------------------------------------------------------------------- scope


async def test_a_volunteer_cannot_create_activities(volunteer: Chat, crowd: Crowd) -> None:
    menu = await volunteer.say("菜单")
    assert "发布活动" not in menu and "活动管理" not in menu
    reply = await volunteer.say("发布活动")
    assert "不能使用" in reply and rows(volunteer.app, Activity) == []
    with volunteer.app.db.session() as session:
        person = session.scalar(select(Person).where(Person.phone == "10000000001"))
        assert person is not None
        with pytest.raises(AudienceNotAllowed):
            checked_audience(person, {"kind": "township_volunteers"})


async def test_a_coordinator_reaches_only_their_own_township(coordinator: Chat, crowd: Crowd) -> None:
    audiences = await coordinator.script("发布活动", "兴趣班", "1", "11月25日 下午2点", "镇暖心驿站", "不限")
    assert "本镇志愿者（清溪镇）" in audiences and "全县" not in audiences
    # chosen households: another township's household is not found, its own are
    households = await coordinator.say("选定的家庭")
    assert "QX001" in households and "BY001" not in households
    assert "没找到这些家庭：BY001" in await coordinator.say("BY001")
    await coordinator.say("T001, T002")
    preview = await coordinator.say("无")
    assert "将邀请 2 人" in preview
    with coordinator.app.db.session() as session:
        me = session.scalar(select(Person).where(Person.phone == "10000000101"))
        baiyun = session.scalar(select(Township.id).where(Township.name == "白云乡"))
        assert me is not None
        with pytest.raises(AudienceNotAllowed):
            checked_audience(me, {"kind": "township_volunteers", "township_id": baiyun})
        with pytest.raises(AudienceNotAllowed):
            checked_audience(me, {"kind": "all_volunteers"})
        other = session.scalar(select(Household.id).where(Household.code == "BY001"))
    async with coordinator.app.db.async_session() as asession:
        me = await asession.get(Person, me.id)
        with pytest.raises(AudienceNotAllowed):
            await resolve_audience(asession, me, {"kind": "households", "household_ids": [other]})


async def test_an_admin_may_invite_every_volunteer_in_the_county(county: App, crowd: Crowd) -> None:
    admin = Chat(county, "10000000900")
    preview = await admin.script("发布活动", "健康日", "1", "明天 9:00", "县医院", "不限", "全县志愿者", "无")
    everyone = len(crowd.township_volunteers) + len(crowd.other_township_volunteers) + 4  # + demo four
    assert f"将邀请 {everyone} 人" in preview
    await admin.say("现在发送")
    assert the_activity(county).township_id is None


# --------------------------------------------------------------------- broadcast


class RecordingSender:
    """A platform that accepts every message and notes when it came (the worker's real limits apply)."""

    def __init__(self, channel: str, per_second: float) -> None:
        self.channel = channel
        self.limits = RateLimit(per_second=per_second, per_recipient_interval=1.0)
        self.sent: list[tuple[float, SendRequest]] = []

    async def send(self, request: SendRequest) -> SendResult:
        self.sent.append((time.monotonic(), request))
        return SendResult.sent(f"m{request.outbox_id}")


async def test_broadcast_to_a_township_reaches_everyone_once_on_their_channel(
        coordinator: Chat, big_crowd: Crowd) -> None:
    crowd = big_crowd
    app = coordinator.app
    preview = await coordinator.script("发布活动", "兴趣班", "1", "11月25日 下午2点", "镇暖心驿站", "不限",
                                       "1", "无")
    per_channel = {c: sum(1 for v in crowd.township_volunteers.values() if v == c) for c in CHANNELS}
    total = len(crowd.township_volunteers) + 2  # + the demo's two 清溪镇 volunteers, no address yet
    assert f"将邀请 {total} 人" in preview
    assert f"Telegram {per_channel['telegram']}" in preview and f"微信 {per_channel['wechat']}" in preview
    assert "其中 2 人还没有可用的联系方式" in preview
    started = time.perf_counter()
    assert f"共 {total} 人" in await coordinator.say("现在发送")
    elapsed = time.perf_counter() - started
    print(f"\nbroadcast to {total} recipients queued in {elapsed:.2f}s")

    activity = the_activity(app)
    outbox = rows(app, OutboxMessage, OutboxMessage.kind == "invitation")
    assert len(outbox) == total
    by_person = {m.person_id: m for m in outbox}
    assert set(crowd.township_volunteers) <= set(by_person)
    assert not crowd.other_township_volunteers & set(by_person)
    invitations = {i.person_id: i for i in rows(app, Invitation)}
    with app.db.session() as session:
        tokens = {t.token: t for t in session.scalars(select(ActionToken))}
    for person_id, channel in crowd.township_volunteers.items():
        message = by_person[person_id]
        assert message.idempotency_key == f"invite:{activity.id}:{person_id}"
        assert (message.channel, message.address) == crowd.addresses[person_id]
        assert invitations[person_id].channel == channel
        assert [o["label"] for o in message.payload["options"]] == ["参加", "不参加", "待定"]
        actions = [parse_action(tokens[o["token"]].action["value"]) for o in message.payload["options"]]
        assert actions == [{"start": "rsvp", "invitation_id": invitations[person_id].id, "answer": a}
                           for a in ("yes", "no", "maybe")]
        assert all(tokens[o["token"]].address == message.address for o in message.payload["options"])
        assert "兴趣班" in message.payload["text"] and "镇暖心驿站" in message.payload["text"]

    # the real delivery worker sends them within each channel's configured rate
    rates = {"console": 200.0, "telegram": 30.0, "wechat": 40.0}
    senders = {c: RecordingSender(c, r) for c, r in rates.items()}
    worker = DeliveryWorker(app.db, senders, now=app.services.now,  # type: ignore[arg-type]
                            settings=WorkerSettings(batch_size=200, concurrency=16))
    began = time.monotonic()
    for _ in range(20):
        if not (await worker.run_once()).claimed:
            break
    for channel, sender in senders.items():
        stamps = sorted(at - began for at, r in sender.sent if r.kind == "invitation")
        assert len(stamps) == per_channel[channel]
        # a token bucket of `rate` a second with a burst of `rate`: message k (from 0) cannot
        # leave before (k + 1 - rate) / rate seconds
        rate = rates[channel]
        assert all(at >= (k + 1 - rate) / rate - 0.02 for k, at in enumerate(stamps))
        print(f"{channel}: {len(stamps)} sent in {stamps[-1]:.2f}s (limit {rate:.0f}/s, "
              f"burst {rate:.0f})")
    assert max(at for s in senders.values() for at, _ in s.sent) - began >= \
        (per_channel["wechat"] - rates["wechat"]) / rates["wechat"] - 0.02  # the limit really bound
    sent_people = [r.person_id for s in senders.values() for _, r in s.sent]
    assert len(sent_people) == len(set(sent_people)) == len(crowd.township_volunteers)


async def test_families_are_invited_only_when_they_opted_in(coordinator: Chat, crowd: Crowd) -> None:
    app = coordinator.app
    preview = await create(coordinator, audience="本镇已同意接收活动邀请的家庭（清溪镇）", send="")
    assert f"将邀请 {len(crowd.opted_in_families)} 人" in preview
    await coordinator.say("现在发送")
    invited = {m.person_id for m in rows(app, OutboxMessage, OutboxMessage.kind == "invitation")}
    assert invited == set(crowd.opted_in_families)
    assert {i.household_id for i in rows(app, Invitation)} == \
        {crowd.households[p] for p in crowd.opted_in_families}


async def test_a_mothers_day_invitation_needs_that_days_own_agreement(coordinator: Chat, crowd: Crowd) -> None:
    willing = sorted(crowd.opted_in_families)[:5]
    with coordinator.app.db.session() as session:
        for pid in willing:
            pref = session.get(Preference, pid)
            assert pref is not None
            pref.mothers_day = True
    await coordinator.script("发布活动", "母亲节书信与康乃馨", "1", "2027-05-09 10:00", "暂不填写", "不限",
                             "2", "无")
    await coordinator.say("现在发送")
    invited = {m.person_id for m in rows(coordinator.app, OutboxMessage, OutboxMessage.kind == "invitation")}
    assert invited == set(willing)


async def test_family_invitations_wait_for_the_end_of_quiet_hours(
        coordinator: Chat, crowd: Crowd, clock: FixedClock) -> None:
    clock.set(datetime(2026, 11, 20, 22, 30, tzinfo=SHANGHAI))
    await create(coordinator, audience="2")
    family = next(iter(crowd.opted_in_families))
    [message] = rows(coordinator.app, OutboxMessage, OutboxMessage.person_id == family)
    assert message.next_attempt_at == datetime(2026, 11, 21, 8, 0, tzinfo=SHANGHAI)


async def test_no_invitation_reaches_a_family_on_its_hard_day(
        coordinator: Chat, crowd: Crowd, clock: FixedClock) -> None:
    """Today (20 November) is the anniversary of one family's loss: its invitation waits a day."""
    grieving, other = list(crowd.opted_in_families)[:2]
    with coordinator.app.db.session() as session:
        session.add(DeceasedChild(household_id=crowd.households[grieving], name="某某",
                                  birth_date=date(1981, 3, 2), death_date=date(2012, 11, 20)))
    await create(coordinator, audience="2")
    sent = {m.person_id: m for m in rows(coordinator.app, OutboxMessage, OutboxMessage.kind == "invitation")}
    assert sent[grieving].next_attempt_at == datetime(2026, 11, 21, 8, 0, tzinfo=SHANGHAI)
    assert sent[other].next_attempt_at == clock.now()


# ------------------------------------------------------------------------- RSVP


async def test_answers_by_button_and_by_word_and_changes(coordinator: Chat, crowd: Crowd) -> None:
    app = coordinator.app
    await create(coordinator)
    person_id = next(p for p, c in crowd.township_volunteers.items() if c == "telegram")
    chat = recipient(app, crowd, person_id)
    assert "已为您报名参加" in await press(chat, app, "参加")
    [inv] = rows(app, Invitation, Invitation.person_id == person_id)
    assert inv.rsvp == "yes"
    # the same button again: a pushed button acts once, so it is stale and changes nothing
    assert "这个按钮已经过期了" in await press(chat, app, "参加")
    [inv] = rows(app, Invitation, Invitation.person_id == person_id)
    assert inv.rsvp == "yes"
    assert "这次不参加" in await press(chat, app, "不参加")
    # typed, on a channel without buttons: the word is the answer
    assert "先记为待定" in await chat.say("待定")
    [inv] = rows(app, Invitation, Invitation.person_id == person_id)
    assert inv.rsvp == "maybe"


async def test_someone_invited_before_they_had_an_address_answers_once_they_do(coordinator: Chat) -> None:
    """The demo volunteer 林晓燕 has never opened the bot: her invitation waits, then she answers."""
    app = coordinator.app
    await create(coordinator)
    [me] = rows(app, Person, Person.phone == "10000000001")
    [waiting] = rows(app, Invitation, Invitation.person_id == me.id)
    assert waiting.channel == "none"
    her = Chat(app, "10000000001")  # she opens the console chat: her waiting messages are routed
    assert "已为您报名参加" in await her.say("参加")
    [inv] = rows(app, Invitation, Invitation.id == waiting.id)
    assert inv.rsvp == "yes" and inv.channel == "console"


async def test_only_the_invited_person_can_answer(coordinator: Chat, crowd: Crowd) -> None:
    app = coordinator.app
    await create(coordinator)
    a, b = list(crowd.township_volunteers)[:2]
    [inv_a] = rows(app, Invitation, Invitation.person_id == a)
    async with app.db.async_session() as session:
        outcome = await record_rsvp(session, invitation_id=inv_a.id, person_id=b, answer="yes",
                                    now=app.services.now(), window=SendWindow(SHANGHAI))
    assert outcome.status == "not_found"
    # a's button pressed from b's address is refused as stale
    [message] = rows(app, OutboxMessage, OutboxMessage.person_id == a)
    chat_b = recipient(app, crowd, b)
    chat_b._linked = True
    reply = await chat_b.say(option_token=message.payload["options"][0]["token"])
    assert "按钮已经过期" in reply
    assert rows(app, Invitation, Invitation.id == inv_a.id)[0].rsvp is None


async def test_capacity_waitlist_and_promotion(coordinator: Chat, crowd: Crowd, clock: FixedClock) -> None:
    app = coordinator.app
    await create(coordinator, capacity="2")
    first, second, third, fourth = (recipient(app, crowd, p) for p in list(crowd.township_volunteers)[:4])
    for chat in (first, second):
        assert "已为您报名参加" in await press(chat, app, "参加")
        clock.advance(minutes=1)
    assert "候补第 1 位" in await press(third, app, "参加")
    clock.advance(minutes=1)
    assert "候补第 2 位" in await press(fourth, app, "参加")
    assert "这次不参加" in await press(second, app, "不参加")  # a place comes free
    invs = {i.person_id: i for i in rows(app, Invitation, Invitation.rsvp == "yes")}
    third_id, fourth_id = list(crowd.township_volunteers)[2:4]
    assert not invs[third_id].waitlisted and invs[third_id].promoted_at is not None
    assert invs[fourth_id].waitlisted
    [told] = rows(app, OutboxMessage, OutboxMessage.idempotency_key.like("promoted:%"))
    assert told.person_id == third_id and "候补转为正式参加" in told.payload["text"]
    # the promoted person can still give the place up, and the next in line moves up
    assert "这次不参加" in await press(third, app, "不参加")
    assert not rows(app, Invitation, Invitation.person_id == fourth_id)[0].waitlisted


async def test_answers_close_when_the_activity_starts(coordinator: Chat, crowd: Crowd, clock: FixedClock) -> None:
    app = coordinator.app
    await create(coordinator)
    chat = recipient(app, crowd, next(iter(crowd.township_volunteers)))
    clock.set(datetime(2026, 11, 25, 14, 0, tzinfo=SHANGHAI))
    reply = await press(chat, app, "参加")
    assert "按钮已经过期" in reply or "已经开始" in reply  # the token expires with the activity
    assert rows(app, Invitation, Invitation.rsvp.is_not(None)) == []


# --------------------------------------------------------------- follow-through


async def test_reminders_go_the_day_before_to_those_who_said_yes(
        coordinator: Chat, crowd: Crowd, clock: FixedClock) -> None:
    app = coordinator.app
    await create(coordinator, capacity="1")
    yes, waiting, no = (recipient(app, crowd, p) for p in list(crowd.township_volunteers)[:3])
    await press(yes, app, "参加")
    await press(waiting, app, "参加")
    await press(no, app, "不参加")
    clock.set(datetime(2026, 11, 24, 8, 59, tzinfo=SHANGHAI))
    assert (await reminders_job(app, clock.now()))["reminded"] == 0
    clock.set(datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI))
    assert (await reminders_job(app, clock.now()))["reminded"] == 1
    assert (await reminders_job(app, clock.now()))["reminded"] == 0  # idempotent
    [reminder] = rows(app, OutboxMessage, OutboxMessage.kind == "reminder")
    assert reminder.address == yes.address and "活动提醒" in reminder.payload["text"]
    assert [o["label"] for o in reminder.payload["options"]] == ["不参加"]
    # moved to a later day: a new reminder for the new time
    await coordinator.script("活动管理", "1", "改期", "11月27日 下午2点", "是")
    clock.set(datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI))
    assert (await reminders_job(app, clock.now()))["reminded"] == 1


async def test_cancel_tells_everyone_invited(coordinator: Chat, crowd: Crowd) -> None:
    app = coordinator.app
    await create(coordinator)
    invited = {m.person_id for m in rows(app, OutboxMessage, OutboxMessage.kind == "invitation")}
    chat = recipient(app, crowd, next(iter(crowd.township_volunteers)))
    await press(chat, app, "参加")
    await coordinator.script("活动管理", "1", "取消活动", "天气原因")
    reply = await coordinator.say("是")
    assert f"已通知 {len(invited)} 人" in reply
    notices = rows(app, OutboxMessage, OutboxMessage.kind == "notice")
    assert {n.person_id for n in notices} == invited
    assert all("活动取消" in n.payload["text"] and "天气原因" in n.payload["text"] for n in notices)
    assert the_activity(app).status == "cancelled"
    reply = await chat.say("不参加")
    assert "没有需要回复的活动邀请" in reply


async def test_reschedule_tells_everyone_and_lets_them_answer_again(coordinator: Chat, crowd: Crowd) -> None:
    app = coordinator.app
    await create(coordinator)
    chat = recipient(app, crowd, next(iter(crowd.township_volunteers)))
    await press(chat, app, "参加")
    await coordinator.script("活动管理", "1", "改期")
    assert "已经过了" in await coordinator.say("11月19日 下午2点")
    assert "11月27日" in await coordinator.say("11月27日 下午2点")
    assert "已改到" in await coordinator.say("是")
    notices = rows(app, OutboxMessage, OutboxMessage.kind == "notice")
    assert len(notices) == len(rows(app, Invitation))
    mine = next(n for n in notices if n.address == chat.address)
    assert "之前回复了“参加”" in mine.payload["text"]
    assert "这次不参加" in await press(chat, app, "不参加", kind="notice")
    assert the_activity(app).starts_at == datetime(2026, 11, 27, 14, 0, tzinfo=SHANGHAI)


async def test_attendance_is_marked_in_chat_and_counts_as_family_contact(
        coordinator: Chat, crowd: Crowd, clock: FixedClock) -> None:
    app = coordinator.app
    await create(coordinator, audience="2")
    families = list(crowd.opted_in_families)[:3]
    for pid in families:
        await press(recipient(app, crowd, pid), app, "参加")
    await coordinator.script("活动管理", "1")
    assert "标记出席" not in coordinator.last["text"] + str(coordinator.last["options"])
    clock.set(datetime(2026, 11, 25, 16, 0, tzinfo=SHANGHAI))
    listing = await coordinator.script("活动管理", "1", "标记出席")
    assert listing.count("（参加）") == 3
    assert "请回复 1 到 3" in await coordinator.say("7")
    summary = await coordinator.say("1, 3")
    assert "2 人来了" in summary and "出席 2" in summary
    came = {i.person_id for i in rows(app, Invitation, Invitation.attended.is_(True))}
    assert came == {families[0], families[2]}
    visits = rows(app, Visit, Visit.source == "activity")
    assert {v.household_id for v in visits} == {crowd.households[families[0]], crowd.households[families[2]]}
    assert all(v.kind == "activity" for v in visits)
    # a correction removes the contact of a household nobody from which came
    await coordinator.script("标记出席", "1")
    assert {v.household_id for v in rows(app, Visit, Visit.source == "activity")} == \
        {crowd.households[families[0]]}


async def test_summary_counts_answers_by_channel(coordinator: Chat, crowd: Crowd) -> None:
    app = coordinator.app
    await create(coordinator)
    volunteers = list(crowd.township_volunteers.items())
    # created console, telegram, wechat in turn: three of each answer, one on each channel
    for (pid, _channel), label in zip(volunteers[:9], ["参加"] * 3 + ["不参加"] * 3 + ["待定"] * 3,
                                      strict=True):
        await press(recipient(app, crowd, pid), app, label)
    summary = await coordinator.script("活动管理", "1")
    total = len(volunteers) + 2
    assert f"合计：邀请 {total}，参加 3，候补 0，不参加 3，待定 3，未回复 {total - 9}，出席 0" in summary
    tg = sum(1 for _p, c in volunteers if c == "telegram")
    assert f"· Telegram：邀请 {tg}，参加 1，候补 0，不参加 1，待定 1，未回复 {tg - 3}，出席 0" in summary
    assert "· 无法联系：邀请 2" in summary


def test_cli_lists_activities_with_counts(coordinator: Chat, crowd: Crowd, capsys: pytest.CaptureFixture[str],
                                          ) -> None:
    app = coordinator.app

    async def setup() -> None:
        await create(coordinator)
        await press(recipient(app, crowd, next(iter(crowd.township_volunteers))), app, "参加")
    asyncio.run(setup())  # this test is sync so the CLI can run its own loop-free session
    db = app.db.url
    assert cli_main(["--db", db, "activities", "--format", "json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["title"] == "兴趣班" and listed["township"] == "清溪镇"
    assert listed["invited"] == len(crowd.township_volunteers) + 2 and listed["yes"] == 1
    assert listed["by_channel"]["wechat"]["invited"] == \
        sum(1 for c in crowd.township_volunteers.values() if c == "wechat")
    assert cli_main(["--db", db, "activities", "--township", "白云乡"]) == 0
    assert "0 个活动" in capsys.readouterr().out
    assert cli_main(["--db", db, "activities", "--township", "火星"]) == 2


# ------------------------------------------------------------- scheduled sends


async def test_a_scheduled_send_survives_a_restart(
        coordinator: Chat, crowd: Crowd, clock: FixedClock, db_url: str) -> None:
    app = coordinator.app
    await create(coordinator, send="定时发送")
    reply = await coordinator.say("明天 9:00")
    assert "邀请将在 11月21日（周六）09:00 发出" in reply
    activity = the_activity(app)
    assert activity.status == "scheduled" and rows(app, Invitation) == []
    await app.db.adispose()  # the process stops

    restarted = build_app(app.settings, clock=clock)  # a new process on the same database file
    try:
        clock.set(datetime(2026, 11, 21, 8, 59, tzinfo=SHANGHAI))
        assert (await scheduled_sends_job(restarted, clock.now()))["invited"] == 0
        clock.set(datetime(2026, 11, 21, 9, 0, 30, tzinfo=SHANGHAI))
        invited = (await scheduled_sends_job(restarted, clock.now()))["invited"]
        assert invited == len(crowd.township_volunteers) + 2
        assert (await scheduled_sends_job(restarted, clock.now()))["invited"] == 0  # once only
        assert len(rows(restarted, OutboxMessage, OutboxMessage.kind == "invitation")) == invited
        [done] = rows(restarted, OutboxMessage, OutboxMessage.idempotency_key == f"activity-sent:{activity.id}")
        assert f"共邀请 {invited} 人" in done.payload["text"]
        assert the_activity(restarted).status == "sent"
    finally:
        await restarted.db.adispose()


async def test_a_scheduled_send_reresolves_the_audience(coordinator: Chat, crowd: Crowd, clock: FixedClock) -> None:
    """A family who stops messages between scheduling and sending is not invited."""
    app = coordinator.app
    await create(coordinator, audience="2", send="定时发送")
    await coordinator.say("明天 9:00")
    leaver = next(iter(crowd.opted_in_families))
    with app.db.session() as session:
        pref = session.get(Preference, leaver)
        assert pref is not None
        pref.stopped_at = clock.now()
    clock.set(datetime(2026, 11, 21, 9, 0, tzinfo=SHANGHAI))
    assert (await scheduled_sends_job(app, clock.now()))["invited"] == len(crowd.opted_in_families) - 1
    assert rows(app, Invitation, Invitation.person_id == leaver) == []


async def test_scheduler_runs_the_activity_jobs(coordinator: Chat, crowd: Crowd, clock: FixedClock) -> None:
    from bot.care.scheduler import run_jobs

    await create(coordinator, send="定时发送")
    await coordinator.say("明天 9:00")
    clock.set(datetime(2026, 11, 21, 9, 5, tzinfo=SHANGHAI))
    results = await run_jobs(coordinator.app, clock.now())
    assert results["activity_sends"] == {"invited": len(crowd.township_volunteers) + 2}
    with coordinator.app.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Invitation)) == len(crowd.township_volunteers) + 2


# -------------------------------------------------------------- bad input


async def test_create_dialog_reasks_with_examples(coordinator: Chat) -> None:
    await coordinator.script("发布活动", "兴趣班", "1")
    assert "没看懂这个日期" in await coordinator.say("找个时间")
    assert "把时间也写上" in await coordinator.say("11月25日")
    assert "已经过了" in await coordinator.say("今天 上午9点")
    assert "在哪里" in await coordinator.say("下周三 下午两点半")
    await coordinator.say("暂不填写")
    assert "请写人数" in await coordinator.say("很多")
    await coordinator.say("３０")
    await coordinator.say("1")
    preview = await coordinator.say("请带上老花镜")
    assert "11月25日（周三）14:30" in preview and "名额：30" in preview and "附言：请带上老花镜" in preview
    # change one field before sending
    await coordinator.script("修改", "地点")
    assert "地点：文化站" in await coordinator.say("文化站")
    assert "没有保存" in await coordinator.say("放弃")
    assert rows(coordinator.app, Activity) == []


def test_due_time_of_reminders_is_configurable(db_url: str, clock: FixedClock, tmp_path: Any) -> None:
    from bot.care.activities import reminder_settings
    from bot.config import load_settings

    config = tmp_path / "county.toml"
    config.write_text('[activities]\nreminder_days_before = 2\nreminder_time = "18:30"\n')
    settings = load_settings(db=db_url, config=str(config), env={})
    assert reminder_settings(settings)[0] == 2
    assert reminder_settings(settings)[1].isoformat() == "18:30:00"
    assert timedelta(days=reminder_settings(load_settings(db=db_url, env={}))[0]) == timedelta(days=1)


async def test_a_scheduled_send_that_missed_its_activity_is_not_sent_late(
        coordinator: Chat, crowd: Crowd, clock: FixedClock) -> None:
    app = coordinator.app
    await create(coordinator, send="定时发送")
    await coordinator.say("明天 9:00")
    clock.set(datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI))  # the scheduler was down for days
    assert (await scheduled_sends_job(app, clock.now()))["invited"] == 0
    assert rows(app, Invitation) == [] and the_activity(app).status == "draft"
    [told] = rows(app, OutboxMessage, OutboxMessage.kind == "notice")
    assert "没有发出" in told.payload["text"]
