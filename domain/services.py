"""What dialogs need from the wider app, declared here so dialogs never import `bot/`.

The composition root in `bot/` builds a `Services` with real implementations; tests build one
with a fixed clock. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from domain.messages import Attachment
    from storage.models import Person


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """Starts at a chosen instant and runs on from there (WARMLINE_NOW, training sessions)."""

    def __init__(self, start: datetime, origin: float | None = None) -> None:
        self._start = start.astimezone(UTC)
        # the system's monotonic time at `start`: another process given it reads the same time
        self.origin = monotonic() if origin is None else origin

    def now(self) -> datetime:
        return self._start + timedelta(seconds=monotonic() - self.origin)


class FixedClock:
    """A clock that moves only when told to: for tests."""

    def __init__(self, at: datetime) -> None:
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = at.astimezone(UTC)

    def advance(self, **delta: float) -> None:
        self._at += timedelta(**delta)


@dataclass(frozen=True)
class HealthThresholds:
    """Danger and plausibility limits for readings; a county sets them in configuration."""

    systolic_high: int = 180
    diastolic_high: int = 110
    systolic_low: int = 80
    glucose_low: float = 3.0
    glucose_high: float = 16.7
    systolic_range: tuple[int, int] = (50, 300)
    diastolic_range: tuple[int, int] = (30, 200)
    pulse_range: tuple[int, int] = (25, 250)
    glucose_range: tuple[float, float] = (0.5, 40.0)


class OccasionProvider(Protocol):
    def choices_near(self, day: date) -> list[tuple[str, str]]:
        """(key, Chinese name) of occasions a visit on `day` could be for, nearest first."""
        ...


@dataclass(frozen=True)
class StaticOccasions:
    """A plain list of occasions; the care calendar in `bot/` supplies a date-aware one."""

    occasions: tuple[tuple[str, str], ...] = ()

    def choices_near(self, day: date) -> list[tuple[str, str]]:
        return list(self.occasions)


@dataclass(frozen=True)
class TaskView:
    """One planned task as a dialog shows it (the planner in `bot/care/` computes them)."""

    kind: str
    title: str
    due: date
    status: str  # upcoming | due | overdue | done | missed
    household_id: int
    member_name: str | None = None


class DueTasks(Protocol):
    async def for_household(self, session: AsyncSession, household_id: int,
                            at: datetime) -> list[TaskView]: ...


class NoTasks:
    """Until the planner is wired in, there is nothing due."""

    async def for_household(self, session: AsyncSession, household_id: int,
                            at: datetime) -> list[TaskView]:
        return []


@dataclass(frozen=True)
class CaseworkPolicy:
    """Case-work numbers a county sets in `[casework]` (bot/defaults/casework.toml)."""

    insurance_services: tuple[str, ...] = ("hospital_care_insurance", "accident_insurance",
                                           "pension_insurance")
    insurance_expiry_days: int = 30
    declined_pace_days: int = 30
    max_pace_days: int = 90
    follow_up_escalate_hours: float = 72.0


@dataclass(frozen=True)
class OutreachPolicy:
    """Family outreach numbers a county sets in `[outreach]` (bot/defaults/outreach.toml)."""

    # a family's message not answered within this many hours goes to the township coordinator
    answer_within_hours: float = 24.0
    # words in a family's message that ask for a phone call (matched lower-cased, after NFKC)
    call_words: tuple[str, ...] = ("我想聊聊", "想聊聊", "打电话", "回电话", "来电话", "call me")


class HardDays(Protocol):
    """A family's hard days (the child's death anniversary and birthday, 清明): no cheerful
    broadcast reaches the household then. The care calendar in `bot/` supplies the real one."""

    async def of(self, session: AsyncSession, household_ids: Sequence[int], start: date,
                 end: date) -> dict[int, set[date]]: ...


class NoHardDays:
    async def of(self, session: AsyncSession, household_ids: Sequence[int], start: date,
                 end: date) -> dict[int, set[date]]:
        return {}


class ChatReports(Protocol):
    async def for_person(self, session: AsyncSession, person: Person, at: datetime,
                         period: str | None = None) -> tuple[str, Attachment | None]:
        """A short text summary and a chart for the person's scope.

        `period`: None (this month), "last_month", "quarter", "year", or a period code such as
        "2026-Q3"; an unreadable one raises ValueError with a message fit to show.
        """
        ...


@dataclass
class Services:
    clock: Clock = field(default_factory=SystemClock)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    occasions: OccasionProvider = field(default_factory=StaticOccasions)
    tasks: DueTasks = field(default_factory=NoTasks)
    reports: ChatReports | None = None
    hard_days: HardDays = field(default_factory=NoHardDays)
    casework: CaseworkPolicy = field(default_factory=CaseworkPolicy)
    outreach: OutreachPolicy = field(default_factory=OutreachPolicy)
    idle_timeout: timedelta = timedelta(hours=2)
    invite_ttl: timedelta = timedelta(days=14)
    invite_max_failures: int = 5
    invite_max_failures_global: int = 50  # wrong codes from all addresses together, per window
    invite_failure_window: timedelta = timedelta(hours=1)
    # local hours when no message goes to a family ([program] quiet_hours): (start, end)
    quiet_hours: tuple[time, time] = (time(21, 0), time(8, 0))
    # the web console's address as people open it (https://host/console), and how long a
    # sign-in link sent in chat stays usable
    console_url: str = "http://127.0.0.1:8080/console"
    console_link_ttl: timedelta = timedelta(minutes=10)

    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        return self.clock.now().astimezone(self.timezone).date()

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.timezone)
