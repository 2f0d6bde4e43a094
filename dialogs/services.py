"""What dialogs need from the wider app. The declarations live in `domain.services`, because
the rules the dialogs share with the scheduled jobs read the same clock and policies; the
composition root in `bot/` imports them from here or there alike."""

from __future__ import annotations

from domain.services import (
    CaseworkPolicy,
    ChatReports,
    Clock,
    DueTasks,
    FixedClock,
    HardDays,
    HealthThresholds,
    NoHardDays,
    NoTasks,
    OccasionProvider,
    OffsetClock,
    OutreachPolicy,
    Services,
    StaticOccasions,
    SystemClock,
    TaskView,
)

__all__ = ["CaseworkPolicy", "ChatReports", "Clock", "DueTasks", "FixedClock", "HardDays",
           "HealthThresholds", "NoHardDays", "NoTasks", "OccasionProvider", "OffsetClock",
           "OutreachPolicy", "Services", "StaticOccasions", "SystemClock", "TaskView"]
