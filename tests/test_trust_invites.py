"""Invite codes cannot be guessed by spreading the guesses over many chat accounts."""

from __future__ import annotations

from bot.app import App
from dialogs.services import FixedClock
from tests.chat import Chat
from tests.test_registration import make_code


async def test_many_addresses_guessing_together_are_locked_out_county_wide(county: App, clock: FixedClock) -> None:
    code = make_code(county)
    assert county.services.invite_max_failures_global == 50  # the documented default
    for n in range(50):  # each account stays far under its own limit of 5
        guesser = Chat(county, f"tg-guesser-{n}", channel="telegram")
        await guesser.say("你好")
        assert "不对" in await guesser.say(f"ABCD-{n:04d}".replace("0", "2").replace("1", "3"))
    honest = Chat(county, "tg-honest", channel="telegram")
    await honest.say("你好")
    assert "次数太多" in await honest.say(code)  # even the right code, for the rest of the hour
    assert honest.person() is None
    clock.advance(minutes=61)
    assert "姓名" in await honest.say(code)  # the window has passed: the code works
