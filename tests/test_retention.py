"""Retention: handled message ids, old button tokens and invite failures are pruned on the
scheduler's tick, by the ages in `[retention]`, without ever letting a platform retry through."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.care.scheduler import run_jobs
from bot.config import ConfigError
from bot.retention import Retention, prune
from dialogs.services import FixedClock
from storage.models import ActionToken, InviteFailure, ProcessedInbound
from tests.chat import Chat


def count(app: App, model: type) -> int:
    with app.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


async def test_a_platform_retry_within_a_day_is_still_recognised_and_old_ids_go(
        county: App, volunteer: Chat, clock: FixedClock) -> None:
    assert await volunteer.send("帮助", message_id="m-1")  # handled once, answered
    clock.advance(hours=23)
    await run_jobs(county, clock.now())  # the tick prunes with the default ages
    assert await volunteer.send("帮助", message_id="m-1") == []  # Telegram's retry, a day later: ignored
    clock.advance(days=7)
    await run_jobs(county, clock.now())
    with county.db.session() as session:
        assert session.scalar(select(ProcessedInbound).where(ProcessedInbound.inbound_key == "m-1")) is None


async def test_pressed_and_expired_buttons_are_pruned_and_answer_as_before(
        county: App, volunteer: Chat, clock: FixedClock) -> None:
    now = clock.now()
    await volunteer.send("你好")
    with county.db.session() as session:
        for token, used, expires, created in (
                ("old-used", now - timedelta(days=40), None, now - timedelta(days=50)),
                ("new-used", now - timedelta(days=1), None, now - timedelta(days=2)),
                ("old-expired", None, now - timedelta(days=40), now - timedelta(days=41)),
                ("never-pressed", None, None, now - timedelta(days=400))):
            session.add(ActionToken(token=token, channel="console", address=volunteer.address,
                                    action={"value": "menu"}, created_at=created, used_at=used, expires_at=expires))
    stale_before = await volunteer.say(option_token="old-used")
    results = await run_jobs(county, now)
    assert results["retention"]["used_buttons"] == 2
    with county.db.session() as session:
        left = set(session.scalars(select(ActionToken.token).where(ActionToken.token.in_(
            ("old-used", "new-used", "old-expired", "never-pressed")))))
    assert left == {"new-used", "never-pressed"}  # a button never pressed and not expired stays usable
    assert await volunteer.say(option_token="old-used") == stale_before  # the same reply as a used one


async def test_invite_failures_are_kept_for_their_counting_window(county: App, clock: FixedClock) -> None:
    now = clock.now()
    with county.db.session() as session:
        for age in (timedelta(minutes=10), timedelta(days=3), timedelta(days=8)):
            session.add(InviteFailure(channel="console", address="guesser", at=now - age))
    county.settings.raw.setdefault("retention", {})["invite_failures_days"] = 0  # shorter than the window
    async with county.db.async_session() as session:
        counts = await prune(session, now, Retention.from_settings(county.settings))
    assert counts["invite_failures"] == 2  # only the 10-minute-old one is within the hour's window
    assert count(county, InviteFailure) == 1


def test_a_retention_shorter_than_a_platform_retry_is_refused(county: App) -> None:
    county.settings.raw.setdefault("retention", {})["processed_inbound_days"] = 0.5
    with pytest.raises(ConfigError, match="processed_inbound_days"):
        Retention.from_settings(county.settings)
    county.settings.raw["retention"]["processed_inbound_days"] = "a week"
    with pytest.raises(ConfigError, match="number of days"):
        Retention.from_settings(county.settings)
