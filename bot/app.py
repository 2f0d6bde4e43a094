"""The composition root: the one place that turns settings into a database, services and runner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.config import Settings
from dialogs.engine.runner import Runner
from dialogs.registry import ALL_DIALOGS
from dialogs.services import Clock, Services, StaticOccasions
from storage.db import Database


@dataclass
class App:
    settings: Settings
    db: Database
    services: Services
    runner: Runner


def occasion_provider(settings: Settings) -> object:
    try:
        from bot.care.calendar import CalendarOccasions  # type: ignore[import-not-found]
    except ImportError:  # before the calendar exists, offer the plain list
        from bot.care.occasions import OCCASIONS

        return StaticOccasions(OCCASIONS)
    return CalendarOccasions()


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    d = settings.section("dialogs")
    return Services(
        clock=clock or settings.clock(),
        timezone=settings.timezone,
        thresholds=settings.thresholds,
        occasions=occasion_provider(settings),  # type: ignore[arg-type]
        idle_timeout=settings.idle_timeout,
        invite_ttl=timedelta(days=float(d["invite_ttl_days"])),
        invite_max_failures=int(d["invite_max_failures"]),
        invite_failure_window=timedelta(minutes=float(d["invite_failure_window_minutes"])),
    )


def build_app(settings: Settings, clock: Clock | None = None) -> App:
    db = Database(settings.database_url)
    services = build_services(settings, clock)
    return App(settings=settings, db=db, services=services, runner=Runner(db, services, ALL_DIALOGS))
