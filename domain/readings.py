"""Health readings as the program judges them: what no one measures, and what is dangerous.

`implausible` rejects what no living person measures, so the volunteer is asked again;
`danger_reasons` flags what a coordinator must hear about today. Limits come from
configuration (HealthThresholds). Reading the numbers out of typed text is the dialogs' job
(`dialogs/readings.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from domain.services import HealthThresholds


@dataclass(frozen=True)
class Reading:
    systolic: int | None = None
    diastolic: int | None = None
    pulse: int | None = None
    glucose: float | None = None
    glucose_context: str | None = None

    @property
    def has_bp(self) -> bool:
        return self.systolic is not None and self.diastolic is not None

    @property
    def empty(self) -> bool:
        return not self.has_bp and self.glucose is None and self.pulse is None

    def merged(self, other: Reading) -> Reading:
        values = {k: v for k, v in other.__dict__.items() if v is not None}
        return replace(self, **values)


def implausible(reading: Reading, limits: HealthThresholds) -> list[str]:
    """Catalogue keys for values no one measures, so the volunteer is asked again."""
    problems: list[str] = []
    if reading.systolic is not None and not limits.systolic_range[0] <= reading.systolic <= limits.systolic_range[1]:
        problems.append("systolic")
    if reading.diastolic is not None and not limits.diastolic_range[0] <= reading.diastolic <= limits.diastolic_range[1]:
        problems.append("diastolic")
    if reading.has_bp and reading.systolic is not None and reading.diastolic is not None and reading.systolic <= reading.diastolic:
        problems.append("order")
    if reading.pulse is not None and not limits.pulse_range[0] <= reading.pulse <= limits.pulse_range[1]:
        problems.append("pulse")
    if reading.glucose is not None and not limits.glucose_range[0] <= reading.glucose <= limits.glucose_range[1]:
        problems.append("glucose")
    return problems


def danger_reasons(reading: Reading, limits: HealthThresholds) -> list[str]:
    """Short machine-readable reasons a reading needs a coordinator's attention."""
    reasons: list[str] = []
    if (reading.systolic is not None and reading.systolic >= limits.systolic_high) or (reading.diastolic is not None and reading.diastolic >= limits.diastolic_high):
        reasons.append("bp_high")
    if reading.systolic is not None and reading.systolic < limits.systolic_low:
        reasons.append("bp_low")
    if reading.glucose is not None and reading.glucose < limits.glucose_low:
        reasons.append("glucose_low")
    if reading.glucose is not None and reading.glucose >= limits.glucose_high:
        reasons.append("glucose_high")
    return reasons
