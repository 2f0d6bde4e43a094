"""Greetings over a simulated year for a small county with mixed wishes, on a fixed clock.

Each day the greeting job is called at chosen instants (never by sleeping) and the real delivery
worker sends what is due to a fake platform over HTTP; the platform's log is what families got.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.app import App, build_app
from bot.care.calendar import occasions_in
from bot.care.greetings import GreetingSettings, greetings_job, is_hard_day, wanted_occasions
from bot.care.planner import DONE, HOLIDAY_GREETING, plan
from bot.care.policy import Policy
from bot.care.scheduler import run_jobs
from bot.config import ConfigError, load_settings
from bot.delivery.worker import DeliveryWorker
from dialogs.services import FixedClock
from storage.models import (
    ChannelAddress,
    Consent,
    DeceasedChild,
    Greeting,
    Household,
    HouseholdMember,
    OutboxMessage,
    OutboxStatus,
    Person,
    Preference,
    Visit,
)
from tests.conftest import TEST_DATA_KEY
from tests.fakes.platform import FakePlatform
from tests.fakes.sender import FakePlatformSender

SHANGHAI = ZoneInfo("Asia/Shanghai")
YEAR = 2027
OUTAGE = "national_day"  # the delivery worker is down from that morning until the next day


@dataclass(frozen=True)
class Wish:
    """One member's situation in the simulated county."""

    consent: str = "given"  # given | none | proxy (not yet confirmed) | withdrawn
    festivals: bool = False
    own_birthday: bool = False
    mothers_day: bool = False
    fathers_day: bool = False
    stopped: bool = False
    reachable: bool = True


WISHES = {
    "王德福": Wish(festivals=True, own_birthday=True, fathers_day=True),  # birthday = child's birthday
    "李桂芳": Wish(festivals=True),  # said no to Mother's Day
    "陈秀珍": Wish(own_birthday=True, mothers_day=True),  # no festivals
    "赵国庆": Wish(festivals=True, stopped=True),  # said 退订
    "孙玉梅": Wish(consent="none", festivals=True),  # never agreed
    "刘长顺": Wish(consent="proxy", festivals=True),  # a volunteer recorded it; not confirmed
    "吴金山": Wish(consent="withdrawn", festivals=True),  # unfollowed the Official Account
    "杨淑华": Wish(festivals=True),  # her child died on a Mid-Autumn day
    "许福生": Wish(festivals=True, reachable=False),  # agreed, but no address any more
}


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    server = FakePlatform().start()
    yield server
    server.close()


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), SHANGHAI)


def seed_wishes(app: App, clock: FixedClock) -> dict[str, int]:
    """The county's mixed wishes; two children's dates moved onto a greeting day of YEAR."""
    now = clock.now()
    occ = {o.key: o.day for o in occasions_in(YEAR)}
    ids: dict[str, int] = {}
    with app.db.session() as session:
        admin = session.scalar(select(Person).where(Person.phone == "10000000001"))
        assert admin is not None
        for name, wish in WISHES.items():
            person = session.scalar(select(Person).where(Person.name == name))
            assert person is not None
            ids[name] = person.id
            if wish.reachable:
                session.add(ChannelAddress(person_id=person.id, channel="telegram", address=f"tg-{person.id}",
                                           created_at=now))
            session.add(Preference(person_id=person.id, festivals=wish.festivals, own_birthday=wish.own_birthday,
                                   mothers_day=wish.mothers_day, fathers_day=wish.fathers_day,
                                   stopped_at=now if wish.stopped else None, updated_at=now))
            if wish.consent != "none":
                session.add(Consent(person_id=person.id, channel="telegram", wording_version="2026-11",
                                    given_at=now, recorded_by_id=admin.id if wish.consent == "proxy" else None,
                                    withdrawn_at=now if wish.consent == "withdrawn" else None))
        for code, field, when in (("QX001", "birth_date", date(1980, 3, 14)),  # = 王德福's birthday
                                  ("BY002", "death_date", occ["mid_autumn"].replace(year=2015))):
            child = session.scalar(select(DeceasedChild).join(Household).where(Household.code == code))
            assert child is not None
            setattr(child, field, when)
    return ids


def expected_greetings(ids: dict[str, int]) -> set[tuple[int, str, date]]:
    """What should arrive, written from the wishes above and the program's holiday list."""
    festivals = {o.key: o.day for o in occasions_in(YEAR) if o.key in Policy.default().holiday_occasions}
    days = {o.key: o.day for o in occasions_in(YEAR)}
    out = {(ids[name], key, day) for name in ("王德福", "李桂芳", "杨淑华") for key, day in festivals.items()}
    out.discard((ids["杨淑华"], "mid_autumn", days["mid_autumn"]))  # her hard day
    out = {g for g in out if g[1] != OUTAGE}  # expired in the outage, never sent late
    out.add((ids["王德福"], "fathers_day", days["fathers_day"]))
    out.add((ids["陈秀珍"], "mothers_day", days["mothers_day"]))
    out.add((ids["陈秀珍"], "birthday", date(YEAR, 11, 30)))
    # 王德福's own birthday (03-14) is also his child's birthday: no greeting that day
    return out


async def test_a_year_of_greetings(county: App, clock: FixedClock, platform: FakePlatform) -> None:
    ids = seed_wishes(county, clock)
    sender = FakePlatformSender(platform.url, channel="telegram")
    worker = DeliveryWorker(county.db, {"telegram": sender}, now=county.services.now)
    occasion_days = {o.day for o in occasions_in(YEAR)} | {date(YEAR, 3, 14), date(YEAR, 11, 30)}
    outage_day = next(o.day for o in occasions_in(YEAR) if o.key == OUTAGE)
    arrived: list[tuple[int, date, datetime]] = []  # (outbox id, local day, local time)
    app = county
    restarted = False
    try:
        day = date(YEAR, 1, 1)
        while day.year == YEAR:
            busy = day in occasion_days
            if busy:  # before the greeting time (and in quiet hours): nothing yet
                clock.set(local(day, 6, 30))
                assert (await greetings_job(app, clock.now()))["planned"] == 0
            clock.set(local(day, 9, 0))
            planned = (await greetings_job(app, clock.now()))["planned"]
            if planned and not restarted:
                again = await run_jobs(app, clock.now())  # the whole scheduler, a second time
                assert again["greetings"]["planned"] == 0
                app = build_app(app.settings, clock=clock)  # a restart on the same database
                assert (await greetings_job(app, clock.now()))["planned"] == 0
                restarted = True
            if busy:
                assert (await greetings_job(app, clock.now()))["planned"] == 0  # a second tick
            if day != outage_day and (planned or day - timedelta(days=1) == outage_day):
                clock.set(local(day, 9, 1))
                before = platform.count()
                await worker.run_once()
                for received in platform.received[before:]:
                    arrived.append((int(received.ref or 0), day, clock.now().astimezone(SHANGHAI)))
                clock.set(local(day, 9, 2))
                await greetings_job(app, clock.now())  # notes what was delivered (or expired)
            if busy:
                clock.set(local(day, 21, 30))
                assert (await greetings_job(app, clock.now()))["planned"] == 0
            day += timedelta(days=1)
    finally:
        await sender.aclose()
        if app is not county:
            await app.db.adispose()

    with county.db.session() as session:
        rows = {o.id: o for o in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "greeting"))}
        greetings = list(session.scalars(select(Greeting)))
        got = {(rows[ref].person_id, rows[ref].payload["occasion"], d) for ref, d, _t in arrived}
        assert got == expected_greetings(ids)
        assert len(arrived) == len(got)  # nobody got anything twice
        assert all(time(8) <= t.time() < time(21) for _r, _d, t in arrived)  # never in quiet hours
        # the outage: planned that morning, expired at the evening's quiet hours, never sent late
        lost = [g for g in greetings if g.occasion == OUTAGE]
        assert {g.member_person_id for g in lost} == {ids["王德福"], ids["李桂芳"], ids["杨淑华"]}
        assert {g.status for g in lost} == {"expired"}
        assert all(rows[g.outbox_id].status == OutboxStatus.EXPIRED for g in lost)
        assert {g.status for g in greetings if g.occasion != OUTAGE} == {"sent"}
        # every delivered greeting is a contact on the day it arrived, counted once
        visits = list(session.scalars(select(Visit).where(Visit.source == "greeting")))
        assert len(visits) == len(arrived)
        assert {(v.visited_on, v.occasion) for v in visits} == {(d, o) for _p, o, d in got}
        assert all(v.kind == "message" for v in visits)
        # each delivered greeting links the visit of its own member and occasion
        by_id = {v.id: v for v in visits}
        sent = [g for g in greetings if g.status == "sent"]
        assert sorted(g.visit_id for g in sent) == sorted(by_id)
        member_person = dict(session.execute(select(HouseholdMember.id, HouseholdMember.person_id)).all())
        assert all(member_person[by_id[g.visit_id].member_id] == g.member_person_id
                   and by_id[g.visit_id].occasion == g.occasion for g in sent)
        # words: the member's form of address and their contact volunteer's name, nothing cheerful
        texts = [rows[ref].payload["text"] for ref, _d, _t in arrived]
        assert all("快乐" not in t and "退订" in t for t in texts)
        father = [rows[ref].payload["text"] for ref, _d, _t in arrived if rows[ref].person_id == ids["王德福"]]
        assert all(t.startswith("王大爷") and "林晓燕" in t for t in father)
        assert any("中秋" in t for t in father)
        # the planner counts a delivered greeting as that holiday's greeting
        qx001 = session.scalar(select(Household.id).where(Household.code == "QX001"))
        dragon = next(o.day for o in occasions_in(YEAR) if o.key == "dragon_boat")
        tasks = plan(session, local(dragon + timedelta(days=1), 10), Policy.default(), household_ids=[qx001],
                     tz=SHANGHAI)
        [task] = [t for t in tasks if t.kind == HOLIDAY_GREETING and t.occasion == "dragon_boat"]
        assert task.status == DONE
        assert session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.kind == "greeting", OutboxMessage.person_id.in_(
                [ids[n] for n in ("赵国庆", "孙玉梅", "刘长顺", "吴金山", "许福生")]))) == 0


async def test_stop_between_planning_and_delivery_stops_the_greeting(county: App, clock: FixedClock,
                                                                     platform: FakePlatform) -> None:
    ids = seed_wishes(county, clock)
    mid_autumn = next(o.day for o in occasions_in(YEAR) if o.key == "mid_autumn")
    clock.set(local(mid_autumn, 9))
    assert (await greetings_job(county, clock.now()))["planned"] == 2  # 王德福, 李桂芳
    from tests.chat import Chat

    chat = Chat(county, f"tg-{ids['李桂芳']}", channel="telegram")
    chat._linked = True
    assert "已经停止" in await chat.say("退订")
    sender = FakePlatformSender(platform.url, channel="telegram")
    try:
        await DeliveryWorker(county.db, {"telegram": sender}, now=county.services.now).run_once()
    finally:
        await sender.aclose()
    assert Counter(r.chat for r in platform.received if r.text.startswith(("王大爷", "李阿姨"))) == \
        Counter({f"tg-{ids['王德福']}": 1})
    clock.advance(minutes=1)
    result = await greetings_job(county, clock.now())
    assert result["delivered"] == 1 and result["failed"] == 1


async def test_a_greeting_time_inside_quiet_hours_waits_for_their_end(db_url: str, tmp_path: Path,
                                                                      clock: FixedClock) -> None:
    config = tmp_path / "county.toml"
    config.write_text('[outreach]\ngreeting_time = "07:00"\nfestivals = ["double_ninth"]\n', encoding="utf-8")
    settings = load_settings(db=db_url, config=str(config), env={"WARMLINE_DATA_KEY": TEST_DATA_KEY})
    app = build_app(settings, clock=clock)
    from bot.demo import seed_demo

    with app.db.session() as session:
        seed_demo(session, clock.now())
    ids = seed_wishes(app, clock)
    double_ninth = next(o.day for o in occasions_in(YEAR) if o.key == "double_ninth")
    clock.set(local(double_ninth, 7, 0))
    assert (await greetings_job(app, clock.now()))["planned"] == 3
    with app.db.session() as session:
        due = {app.services.local(r.next_attempt_at).time()
               for r in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "greeting"))}
        assert due == {time(8, 0)}
        expiry = {app.services.local(r.expires_at).time()
                  for r in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "greeting"))}
        assert expiry == {time(21, 0)}
    assert ids
    await app.db.adispose()


def test_the_rules_as_plain_functions() -> None:
    """Hard days and the wanted occasions, without a database."""
    qingming = next(o.day for o in occasions_in(YEAR) if o.key == "qingming")
    assert is_hard_day(qingming, [])
    assert is_hard_day(date(YEAR, 7, 19), [(date(1980, 5, 1), date(2009, 7, 19))])
    assert not is_hard_day(date(YEAR, 7, 20), [(date(1980, 5, 1), date(2009, 7, 19))])
    mothers = next(o.day for o in occasions_in(YEAR) if o.key == "mothers_day")
    from bot.care.greetings import Candidate

    member = HouseholdMember(relation="father", birth_date=date(1950, mothers.month, mothers.day),
                             birthday_calendar="solar", lunar_birth_leap=False)
    pref = Preference(festivals=False, own_birthday=True, mothers_day=True, fathers_day=False)
    c = Candidate(member, Person(name="x"), pref)
    assert wanted_occasions(c, [], mothers) == ["birthday"]  # a father is not greeted on Mother's Day


def test_bad_greeting_configuration_is_refused(db_url: str, tmp_path: Path) -> None:
    for body, word in (('festivals = ["christmas"]', "christmas"), ('greeting_time = "9 o\'clock"', "greeting_time"),
                       ('festivals = ["mid_autumn", "mothers_day"]', "mothers_day"),
                       ('templates = { default = "{address} {child}", footer = "" }', "child")):
        config = tmp_path / "bad.toml"
        config.write_text(f"[outreach]\n{body}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=word):  # refused on loading, or when greetings read it
            GreetingSettings.from_settings(
                load_settings(db=db_url, config=str(config), env={"WARMLINE_DATA_KEY": TEST_DATA_KEY}))
