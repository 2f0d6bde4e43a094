"""The program policy as one typed, validated object, read from the `[policy]` settings.

Every rhythm number the planner and reminders use is a field here, so a county changes its
configuration file, not the code; a bad value is refused at start-up with the setting's name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import time
from typing import Any

from bot.care.occasions import NAMES
from bot.config import DEFAULTS_DIR, ConfigError, Settings, load_toml


@dataclass(frozen=True)
class Policy:
    greeting_every_days: int
    paced_greeting_every_days: int
    refused_greeting_every_days: int
    greeting_kinds: tuple[str, ...]
    holiday_kinds: tuple[str, ...]
    birthday_kinds: tuple[str, ...]
    hard_day_kinds: tuple[str, ...]
    holiday_occasions: tuple[str, ...]
    holiday_min_per_year: int
    holiday_opens_days_before: int
    holiday_closes_days_after: int
    health_services_per_month: int
    paced_health_services_per_month: int
    birthday_opens_days_before: int
    birthday_closes_days_after: int
    intake_due_days: int
    reassessment_months: int
    assessment_opens_days_before: int
    hard_day_opens_days_before: int
    hard_day_closes_days_after: int
    hard_day_calls_for_refused: bool
    class_invitation_due_day: int
    class_activity_types: tuple[str, ...]
    digest_time: time
    overdue_escalation_days: int
    horizon_days: int
    lookback_days: int

    def __post_init__(self) -> None:
        unknown = [k for k in self.holiday_occasions if k not in NAMES]
        if unknown:
            raise ConfigError(f"policy.holiday_occasions: unknown occasion {unknown[0]!r}")
        if len(set(self.holiday_occasions)) < self.holiday_min_per_year:
            raise ConfigError(
                f"policy.holiday_occasions lists {len(set(self.holiday_occasions))} occasions, "
                f"fewer than policy.holiday_min_per_year = {self.holiday_min_per_year}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"policy.{f.name} must not be negative")
        if self.greeting_every_days < 1 or self.paced_greeting_every_days < 1 \
                or self.refused_greeting_every_days < 1:
            raise ConfigError("policy greeting periods must be at least 1 day")
        if not 1 <= self.class_invitation_due_day <= 28:
            raise ConfigError("policy.class_invitation_due_day must be between 1 and 28")
        if self.reassessment_months < 1:
            raise ConfigError("policy.reassessment_months must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls.from_mapping(settings.section("policy"))

    @classmethod
    def default(cls) -> Policy:
        """The packaged defaults (bot/defaults/policy.toml), for tests and tools without settings."""
        return cls.from_mapping({})

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> Policy:
        """Policy from a `[policy]` table; missing keys keep the packaged defaults."""
        merged = {**load_toml(DEFAULTS_DIR / "policy.toml")["policy"], **raw}
        kinds = {f.name: str(f.type) for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in merged.items():
            if key not in kinds:
                raise ConfigError(f"policy.{key}: unknown setting")
            try:
                values[key] = _coerce(kinds[key], value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"policy.{key}: {value!r} is not a valid value") from exc
        return cls(**values)


def _coerce(kind: str, value: Any) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(kind)
        return value
    if kind == "int":
        if isinstance(value, bool):
            raise TypeError(kind)
        return int(value)
    if kind.startswith("tuple"):
        if isinstance(value, str):
            raise TypeError(kind)
        return tuple(str(v) for v in value)
    if kind == "time":
        return time.fromisoformat(str(value))
    raise TypeError(kind)
