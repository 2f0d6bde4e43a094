"""A county's configuration file is checked against one schema; mistakes are named, never ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings


def settings_from(tmp_path: Path, text: str, **env: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "county.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(db=str(tmp_path / "w.db"), config=str(path), env=env)


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_from(tmp_path, text)
    return str(caught.value)


def test_a_valid_file_changes_what_it_says(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, "[health]\nsystolic_high = 170\n\n[policy]\nhealth_services_per_month = 3\n")
    assert settings.thresholds.systolic_high == 170 and settings.thresholds.diastolic_high == 110
    assert settings.section("policy")["health_services_per_month"] == 3


def test_a_misspelt_setting_names_the_nearest_valid_one(tmp_path: Path) -> None:
    message = refused(tmp_path, "[health]\nsystolic_hihg = 170\n")
    assert "[health] systolic_hihg" in message and "did you mean systolic_high" in message
    assert "您是不是想写 systolic_high" in message


def test_an_unknown_section_names_the_nearest_one(tmp_path: Path) -> None:
    message = refused(tmp_path, "[helth]\nsystolic_high = 170\n")
    assert "[helth]" in message and "did you mean health" in message


@pytest.mark.parametrize(("text", "words"), [
    ("[health]\nsystolic_high = -5\n", ("systolic_high", "between 130 and 250 mmHg")),
    ("[health]\nsystolic_high = 90\n", ("systolic_high", "between")),
    ("[health]\nglucose_high = 60\n", ("glucose_high", "mmol/L")),
    ("[health]\nsystolic_low = 100\nsystolic_high = 140\ndiastolic_high = 200\n", ("diastolic_high",)),
    ("[health]\nsystolic_high = \"180\"\n", ("systolic_high", "a whole number")),
    ("[policy]\ndigest_time = \"8am\"\n", ("digest_time", "HH:MM")),
    ("[program]\nquiet_hours = { start = \"25:00\", end = \"08:00\" }\n", ("start", "HH:MM")),
    ("[dialogs]\nidle_timeout_minutes = -10\n", ("idle_timeout_minutes", "more than 0")),
    ("[delivery]\nconcurrency = 0\n", ("concurrency", "more than 0")),
    ("[delivery]\nbatch_size = 2.5\n", ("batch_size", "whole number")),
    ("[policy]\nholiday_occasions = [\"mid_autum\"]\n", ("mid_autum", "did you mean mid_autumn")),
    ("[program]\ntimezone = \"Asia/Beijing\"\n", ("timezone", "Asia/Shanghai")),
    ("[wechat.templates.greeting]\ntemplate_id = \"T\"\nfeilds = {}\n", ("feilds", "did you mean fields")),
    ("[sms.templates.stopped]\ntemplate_cod = \"SMS_1\"\n", ("template_cod", "did you mean template_code")),
    ("[sms]\nper_number_per_day = 0\n", ("per_number_per_day", "more than 0")),
])
def test_types_ranges_times_and_durations_are_checked(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    message = refused(tmp_path, text)
    for word in words:
        assert word in message


def test_low_must_stay_below_high(tmp_path: Path) -> None:
    message = refused(tmp_path, "[health]\nsystolic_low = 110\nsystolic_high = 130\nglucose_low = 5.0\n"
                                "glucose_high = 7.0\n[telegram]\nreconnect_min_seconds = 90\n")
    assert "reconnect_min_seconds (90) must be below reconnect_max_seconds (60)" in message


def test_every_mistake_is_listed_not_just_the_first(tmp_path: Path) -> None:
    message = refused(tmp_path, "[health]\nsystolic_hihg = 170\nglucose_low = 0\n[polcy]\nx = 1\n")
    assert len(message.splitlines()) == 3


def test_open_tables_and_optional_settings_are_accepted(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, (
        "[county]\nname = \"示例县\"\n[outreach]\nfestivals = [\"laba\", \"mid_autumn\"]\n"
        "[outreach.templates]\nlaba = \"{address}，腊八到了。——{volunteer}\"\n"
        "[wechat.templates.greeting]\ntemplate_id = \"T1\"\nmax_chars = 20\nfields = { thing1 = \"{title}\" }\n"
        "[[reports.sources]]\nkey = \"county\"\nname = \"县财政\"\namount_yuan = 1000\n"))
    assert settings.section("county")["name"] == "示例县"
    assert settings.origins["outreach.festivals"].startswith("your file")
    assert settings.origins["health.systolic_high"] == "default defaults/core.toml"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_config_check_prints_each_setting_and_where_it_came_from(tmp_path: Path) -> None:
    county = tmp_path / "county.toml"
    county.write_text("[health]\nsystolic_high = 170\n", encoding="utf-8")
    result = cli("config", "check", "--config", str(county), env={"WARMLINE_HTTP_PORT": "8090",
                                                                  "WARMLINE_TELEGRAM_TOKEN": "123:secret"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "configuration is valid" in lines[0]
    high = next(line for line in lines if line.startswith("health.systolic_high"))
    assert "170" in high and f"your file {county}" in high
    low = next(line for line in lines if line.startswith("health.systolic_low"))
    assert "80" in low and "default defaults/core.toml" in low
    assert any(line.startswith("WARMLINE_HTTP_PORT = 8090") and "env WARMLINE_HTTP_PORT" in line for line in lines)
    assert "secret" not in result.stdout  # secrets are said to be set, never shown
    as_json = json.loads(cli("config", "check", "--format", "json", env={"WARMLINE_CONFIG": str(county)}).stdout)
    by_key = {row["key"]: row for row in as_json["settings"]}
    assert by_key["health.systolic_high"]["value"] == 170
    assert by_key["health.systolic_high"]["source"] == f"your file {county} (WARMLINE_CONFIG)"


def test_config_check_refuses_a_bad_file_with_one_line_per_mistake(tmp_path: Path) -> None:
    county = tmp_path / "county.toml"
    county.write_text("[health]\nsystolic_hihg = 170\nsystolic_high = -5\n", encoding="utf-8")
    result = cli("config", "check", "--config", str(county))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("配置错误 / configuration error:") for line in lines)
    assert "did you mean systolic_high" in lines[0] and "between 130 and 250" in lines[1]


def test_every_command_honours_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each command loads the same settings, so a broken file stops every one of them."""
    from bot.cli import build_parser, main

    county = tmp_path / "county.toml"
    county.write_text("[health]\nsystolic_hihg = 170\n", encoding="utf-8")
    families = tmp_path / "families.csv"
    families.write_text("户编号,乡镇,姓名,关系\nQX901,清溪镇,韦长青,父亲\n", encoding="utf-8")
    parser = build_parser()
    commands = [name for action in parser._actions if hasattr(action, "choices") and action.choices
                for name in action.choices if isinstance(name, str) and not name.startswith("-")]
    argv = {"calendar": ["--year", "2026"], "chat": ["--as", "x"], "db": ["current"], "config": ["check"],
            "report": ["--period", "2026-Q3", "--format", "csv"], "invite": ["--role", "volunteer"],
            "export": ["family", "QX001"], "erase": ["family", "QX001"], "import": ["families", str(families)]}
    for command in commands:
        code = main(["--db", str(tmp_path / "w.db"), command, *argv.get(command, []), "--config", str(county)])
        err = capsys.readouterr().err
        assert code == 2 and "systolic_high" in err, (command, err)
    assert {"calendar", "due", "report", "import", "run", "schedule", "config"} <= set(commands)
