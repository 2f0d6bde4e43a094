"""The composition root: the one place that turns settings into a database, services and runner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta

from bot.care.hard_days import CareHardDays
from bot.channels.dispatch import max_concurrent_steps
from bot.config import Settings
from dialogs.engine.flood import FloodGuard
from dialogs.engine.runner import Runner
from dialogs.registry import ALL_DIALOGS
from dialogs.services import (
    CaseworkPolicy,
    ChatReports,
    Clock,
    DueTasks,
    OccasionProvider,
    OutreachPolicy,
    Services,
)
from storage.db import Database


@dataclass
class App:
    settings: Settings
    db: Database
    services: Services
    runner: Runner


def occasion_provider(settings: Settings) -> OccasionProvider:
    from bot.care.calendar import CalendarOccasions  # the lunar calendar loads on first use

    return CalendarOccasions()


def quiet_hours(settings: Settings) -> tuple[time, time]:
    """[program] quiet_hours as local times: no family message goes out between them."""
    q = settings.section("program").get("quiet_hours", {})
    return time.fromisoformat(q.get("start", "21:00")), time.fromisoformat(q.get("end", "08:00"))


def due_tasks(settings: Settings) -> DueTasks:
    """The planner's tasks for the family card (bot/care/due_tasks.py)."""
    from bot.care.due_tasks import PlannerTasks
    from bot.care.policy import Policy

    return PlannerTasks(Policy.from_settings(settings), settings.timezone)


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    d = settings.section("dialogs")
    return Services(
        clock=clock or settings.clock(),
        timezone=settings.timezone,
        thresholds=settings.thresholds,
        occasions=occasion_provider(settings),
        tasks=due_tasks(settings),
        idle_timeout=settings.idle_timeout,
        invite_ttl=timedelta(days=float(d["invite_ttl_days"])),
        invite_max_failures=int(d["invite_max_failures"]),
        invite_max_failures_global=int(d.get("invite_max_failures_global", 50)),
        invite_failure_window=timedelta(minutes=float(d["invite_failure_window_minutes"])),
        quiet_hours=quiet_hours(settings),
        hard_days=CareHardDays(),
        casework=casework_policy(settings),
        outreach=outreach_policy(settings),
        reports=chat_reports(settings),
        console_url=console_url(settings),
        console_link_ttl=timedelta(minutes=float(settings.section("console")["link_minutes"])),
    )


def console_url(settings: Settings) -> str:
    """Where the web console is reached: WARMLINE_CONSOLE_URL, else the HTTP host and port."""
    explicit = settings.get_env("WARMLINE_CONSOLE_URL")
    if explicit:
        return explicit.rstrip("/")
    host = settings.get_env("WARMLINE_HTTP_HOST", "127.0.0.1")
    port = settings.get_env("WARMLINE_HTTP_PORT", "8080")
    return f"http://{host}:{port}/console"


def chat_reports(settings: Settings) -> ChatReports:
    """`/report` in chat: summary and chart (bot/reports/chat.py)."""
    from bot.reports.chat import ReportsInChat

    return ReportsInChat(settings)


def casework_policy(settings: Settings) -> CaseworkPolicy:
    c = settings.section("casework")
    default = CaseworkPolicy()
    return CaseworkPolicy(
        insurance_services=tuple(c.get("insurance_services", default.insurance_services)),
        insurance_expiry_days=int(c.get("insurance_expiry_days", default.insurance_expiry_days)),
        declined_pace_days=int(c.get("declined_pace_days", default.declined_pace_days)),
        max_pace_days=int(c.get("max_pace_days", default.max_pace_days)),
        follow_up_escalate_hours=float(c.get("follow_up_escalate_hours",
                                             default.follow_up_escalate_hours)),
    )


def outreach_policy(settings: Settings) -> OutreachPolicy:
    """[outreach] numbers the family dialogs use (bot/defaults/outreach.toml)."""
    o = settings.section("outreach")
    default = OutreachPolicy()
    return OutreachPolicy(
        answer_within_hours=float(o.get("answer_within_hours", default.answer_within_hours)),
        call_words=tuple(str(w).lower() for w in o.get("call_words", default.call_words)),
    )


def build_app(settings: Settings, clock: Clock | None = None) -> App:
    db = Database(settings.database_url, keyring=settings.keyring(),
                  concurrent_steps=max_concurrent_steps(settings))
    services = build_services(settings, clock)
    flood = FloodGuard.from_section(settings.section("core"))
    return App(settings=settings, db=db, services=services,
               runner=Runner(db, services, ALL_DIALOGS, flood=flood))
