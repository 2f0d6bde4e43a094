"""The report settings: entitlements and budget from `[reports]`, targets from `[policy]`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.care.policy import Policy
from bot.config import ConfigError, Settings


@dataclass(frozen=True)
class BudgetLine:
    key: str
    name: str
    amount_yuan: float
    sources: dict[str, float]
    recorded: str  # holiday_visits | activities | "" (not recorded in Warmline)


@dataclass(frozen=True)
class Source:
    key: str
    name: str
    amount_yuan: float


RECORDED = ("holiday_visits", "activities", "")


@dataclass(frozen=True)
class ReportConfig:
    policy: Policy = field(default_factory=Policy.default)
    hardship_entitlement_yuan: float = 1500
    standard_entitlement_yuan: float = 1000
    danger_followup_hours: float = 24
    chart_dir: str = ""
    sources: tuple[Source, ...] = ()
    budget_lines: tuple[BudgetLine, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> ReportConfig:
        raw = settings.section("reports")
        return cls.from_mapping(raw, Policy.from_settings(settings))

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], policy: Policy | None = None) -> ReportConfig:
        try:
            sources = tuple(Source(str(s["key"]), str(s["name"]), float(s["amount_yuan"]))
                            for s in raw.get("sources", []))
            lines = tuple(BudgetLine(str(b["key"]), str(b["name"]), float(b["amount_yuan"]),
                                     {str(k): float(v) for k, v in dict(b.get("sources", {})).items()},
                                     str(b.get("recorded", "")))
                          for b in raw.get("budget_lines", []))
            config = cls(
                policy=policy or Policy.default(),
                hardship_entitlement_yuan=float(raw.get("hardship_entitlement_yuan", 1500)),
                standard_entitlement_yuan=float(raw.get("standard_entitlement_yuan", 1000)),
                danger_followup_hours=float(raw.get("danger_followup_hours", 24)),
                chart_dir=str(raw.get("chart_dir", "")),
                sources=sources, budget_lines=lines,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"reports: bad setting ({exc})") from exc
        known = {s.key for s in sources}
        for line in lines:
            if line.recorded not in RECORDED:
                raise ConfigError(f"reports.budget_lines {line.key}: recorded must be one of {RECORDED}")
            unknown = set(line.sources) - known
            if unknown:
                raise ConfigError(f"reports.budget_lines {line.key}: unknown source {sorted(unknown)[0]!r}")
        if config.hardship_entitlement_yuan < 0 or config.standard_entitlement_yuan < 0:
            raise ConfigError("reports: entitlements must not be negative")
        return config
