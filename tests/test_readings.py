"""The reading parser accepts what volunteers really type and refuses what no one measures."""

import pytest

from dialogs.readings import (
    Reading,
    danger_reasons,
    implausible,
    parse_blood_pressure,
    parse_glucose,
    parse_reading,
)
from dialogs.services import HealthThresholds

LIMITS = HealthThresholds()


@pytest.mark.parametrize(
    ("typed", "systolic", "diastolic", "pulse"),
    [
        ("135/85", 135, 85, None),
        ("135 85", 135, 85, None),
        ("１３５／８５", 135, 85, None),
        ("１３５　８５", 135, 85, None),
        ("高压135低压85", 135, 85, None),
        ("高压１３５，低压８５，脉搏７２", 135, 85, 72),
        ("收缩压 142 舒张压 90", 142, 90, None),
        ("135/85 72", 135, 85, 72),
        ("135/85/72", 135, 85, 72),
        ("血压135/85，心率80", 135, 85, 80),
        ("BP 190/120", 190, 120, None),
    ],
)
def test_blood_pressure_forms(typed: str, systolic: int, diastolic: int, pulse: int | None) -> None:
    reading = parse_blood_pressure(typed)
    assert (reading.systolic, reading.diastolic, reading.pulse) == (systolic, diastolic, pulse)


@pytest.mark.parametrize(
    ("typed", "value", "context"),
    [
        ("血糖6.8", 6.8, None),
        ("６．８", 6.8, None),
        ("6.8 mmol/L", 6.8, None),
        ("空腹 5.6", 5.6, "fasting"),
        ("餐后两小时 9.1", 9.1, "after_meal"),
        ("血糖12", 12.0, None),
    ],
)
def test_glucose_forms(typed: str, value: float, context: str | None) -> None:
    reading = parse_glucose(typed)
    assert reading.glucose == value
    assert reading.glucose_context == context


def test_combined_reading_in_one_message() -> None:
    reading = parse_reading("135/85 血糖 7.2 餐后")
    assert reading == Reading(135, 85, None, 7.2, "after_meal")


def test_a_bare_decimal_is_not_taken_as_blood_pressure() -> None:
    assert parse_reading("6.8").empty


@pytest.mark.parametrize("typed", ["abc", "", "你好", "血压正常"])
def test_no_reading_in_words(typed: str) -> None:
    assert parse_reading(typed).empty


@pytest.mark.parametrize(
    ("reading", "problem"),
    [
        (Reading(350, 80), "systolic"),
        (Reading(135, 10), "diastolic"),
        (Reading(80, 120), "order"),
        (Reading(135, 85, 400), "pulse"),
        (Reading(glucose=68.0), "glucose"),
    ],
)
def test_impossible_values_are_rejected(reading: Reading, problem: str) -> None:
    assert problem in implausible(reading, LIMITS)


def test_ordinary_values_are_plausible() -> None:
    assert implausible(Reading(135, 85, 72, 6.8), LIMITS) == []


@pytest.mark.parametrize(
    ("reading", "reasons"),
    [
        (Reading(180, 100), ["bp_high"]),
        (Reading(150, 110), ["bp_high"]),
        (Reading(179, 109), []),
        (Reading(75, 50), ["bp_low"]),
        (Reading(glucose=2.9), ["glucose_low"]),
        (Reading(glucose=16.7), ["glucose_high"]),
        (Reading(glucose=16.6), []),
    ],
)
def test_danger_thresholds(reading: Reading, reasons: list[str]) -> None:
    assert danger_reasons(reading, LIMITS) == reasons


def test_thresholds_come_from_configuration() -> None:
    strict = HealthThresholds(systolic_high=160)
    assert danger_reasons(Reading(165, 90), strict) == ["bp_high"]
    assert danger_reasons(Reading(165, 90), LIMITS) == []
