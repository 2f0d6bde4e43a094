"""Joining with an invite code: single use, expiring, hashed, and not guessable by brute force."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.app import App
from dialogs.services import FixedClock
from storage.invites import create_invite, hash_code
from storage.models import ChannelAddress, InviteCode, Person
from tests.chat import Chat


def make_code(app: App, role: str = "volunteer", township: str | None = "白云乡", **kw: object) -> str:
    with app.db.session() as session:
        return create_invite(session, role=role, now=app.services.now(), ttl=timedelta(days=14),
                             township=township, **kw)  # type: ignore[arg-type]


async def test_register_with_a_typed_code(county: App) -> None:
    code = make_code(county)
    newcomer = Chat(county, "tg-555")
    assert "邀请码" in await newcomer.say("你好")
    assert "姓名" in await newcomer.say(code.lower().replace("-", " "))
    assert "白云乡的志愿者" in await newcomer.say("郭小梅")
    reply = await newcomer.say("1")
    assert "注册好了" in reply and "1. 走访记录" in reply
    person = newcomer.person()
    assert person is not None and person.name == "郭小梅" and person.role == "volunteer"
    with county.db.session() as session:
        invite = session.scalar(select(InviteCode))
        assert invite is not None and invite.used_by_id == person.id
        assert invite.code_hash == hash_code(code) and code not in invite.code_hash


async def test_deep_link_payload_registers_in_one_go(county: App) -> None:
    code = make_code(county, role="coordinator", township="长乐镇")
    newcomer = Chat(county, "tg-777")
    assert "姓名" in await newcomer.say("/start", start_payload=code)
    await newcomer.say("黎文静")
    await newcomer.say("确认")
    person = newcomer.person()
    assert person is not None and person.role == "coordinator"


async def test_a_code_works_once(county: App) -> None:
    code = make_code(county)
    first = Chat(county, "a-1")
    await first.script("hi", code, "甲", "1")
    second = Chat(county, "a-2")
    await second.say("hi")
    assert "已经用过" in await second.say(code)
    assert second.person() is None


async def test_an_expired_code_is_refused(county: App, clock: FixedClock) -> None:
    code = make_code(county)
    clock.advance(days=15)
    newcomer = Chat(county, "late")
    await newcomer.say("hi")
    assert "过期" in await newcomer.say(code)


async def test_guessing_is_locked_out(county: App) -> None:
    code = make_code(county)
    guesser = Chat(county, "guesser")
    await guesser.say("hi")
    for attempt in range(5):
        assert "不对" in await guesser.say(f"AAAA-AAA{attempt + 2}")
    assert "次数太多" in await guesser.say(code)  # even the right code, for a while
    assert guesser.person() is None


async def test_a_code_bound_to_an_imported_person_links_them(county: App) -> None:
    with county.db.session() as session:
        person = session.scalar(select(Person).where(Person.phone == "10000000004"))
        assert person is not None
        pid = person.id
    code = make_code(county, township=None, person_id=pid)
    chat = Chat(county, "tg-imported")
    await chat.say("hi")
    assert "黄志明" in await chat.say(code)  # name known: straight to confirmation
    await chat.say("1")
    linked = chat.person()
    assert linked is not None and linked.id == pid


async def test_shared_contact_matches_an_imported_volunteer(county: App) -> None:
    chat = Chat(county, "tg-contact")
    reply = await chat.say("", contact_phone="+86 100 0000 0003")
    assert "马春兰" in reply and "1. 走访记录" in reply  # welcomed, then the menu
    with county.db.session() as session:
        address = session.scalar(select(ChannelAddress).where(ChannelAddress.address == "tg-contact"))
        assert address is not None


async def test_a_shared_contact_of_nobody_falls_back_to_the_code(county: App) -> None:
    chat = Chat(county, "tg-unknown")
    assert "邀请码" in await chat.say("", contact_phone="10000009999")
    assert chat.person() is None
