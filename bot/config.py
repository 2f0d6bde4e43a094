"""Configuration: the packaged defaults, overlaid by the county's TOML file and the environment.

Numbers a county may change (thresholds, timeouts, program policy) live in TOML, never in code.
Secrets and deployment details come from WARMLINE_* environment variables.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.config_schema import check, leaves
from dialogs.services import Clock, HealthThresholds, OffsetClock, SystemClock
from storage.crypto import KeyError_, KeyRing, key_file_for, load_or_create_key_file
from storage.db import resolve_url, sqlite_file

DEFAULTS_DIR = Path(__file__).with_name("defaults")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


@dataclass
class Settings:
    database_url: str
    raw: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    # dotted setting -> where its value came from ("default bot/defaults/core.toml", "your file …")
    origins: dict[str, str] = field(default_factory=dict)

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.raw["program"]["timezone"])

    @property
    def thresholds(self) -> HealthThresholds:
        h = self.raw["health"]
        return HealthThresholds(
            systolic_high=int(h["systolic_high"]), diastolic_high=int(h["diastolic_high"]),
            systolic_low=int(h["systolic_low"]), glucose_low=float(h["glucose_low"]),
            glucose_high=float(h["glucose_high"]),
        )

    @property
    def idle_timeout(self) -> timedelta:
        return timedelta(minutes=float(self.raw["dialogs"]["idle_timeout_minutes"]))

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.raw.get(name, {}))

    def get_env(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else default

    def keyring(self) -> KeyRing:
        """The data key(s) for sensitive text: WARMLINE_DATA_KEY (comma-separated, newest first),
        else WARMLINE_DATA_KEY_FILE, else a key file beside a SQLite database (made on first use)."""
        value = self.get_env("WARMLINE_DATA_KEY")
        path = self.get_env("WARMLINE_DATA_KEY_FILE")
        try:
            if value:
                return KeyRing.from_setting(value)
            if path:
                return KeyRing.from_setting(load_or_create_key_file(Path(path), self.database_url))
            db_file = sqlite_file(self.database_url)
            if db_file is not None:
                return KeyRing.from_setting(load_or_create_key_file(key_file_for(db_file), self.database_url))
        except (KeyError_, OSError) as exc:
            raise ConfigError(str(exc)) from exc
        raise ConfigError("a shared database needs WARMLINE_DATA_KEY (see SECURITY.md)")

    def clock(self) -> Clock:
        start = self.get_env("WARMLINE_NOW")
        if not start:
            return SystemClock()
        # WARMLINE_NOW_ORIGIN: set by `warmline run` for its helper processes, so their clock
        # and its own read the same time (bot/channels/step_processes.py)
        origin = self.get_env("WARMLINE_NOW_ORIGIN")
        return OffsetClock(parse_instant(start, self.timezone), float(origin) if origin else None)


def parse_instant(text: str, tz: ZoneInfo) -> datetime:
    """An ISO instant; without an offset it is read in the program's time zone."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(f"not an ISO date-time: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value


def _read_config(file: Path) -> dict[str, Any]:
    """A county's TOML file, or a ConfigError saying in both languages why it cannot be read."""
    if not file.exists():
        raise ConfigError(f"找不到配置文件 / configuration file not found: {file}")
    if file.is_dir():
        raise ConfigError(f"{file} 是文件夹，不是配置文件 / is a folder, not a configuration file")
    try:
        return load_toml(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: 格式不对 / not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: 不是文本文件（需要 UTF-8 的 TOML）/ not a text file (UTF-8 TOML expected)") from exc
    except OSError as exc:
        raise ConfigError(f"{file}: 无法读取 / cannot be read ({exc.strerror or type(exc).__name__})") from exc


def load_defaults() -> tuple[dict[str, Any], dict[str, str]]:
    """The packaged defaults merged, and for each setting the defaults file it comes from."""
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for part in sorted(DEFAULTS_DIR.glob("*.toml")):  # one file per area: core.toml, policy.toml…
        data = load_toml(part)
        raw = _merge(raw, data)
        for path, _value in leaves(data):
            origins[path] = f"default {DEFAULTS_DIR.name}/{part.name}"
    return raw, origins


def load_settings(db: str | None = None, config: str | None = None,
                  env: dict[str, str] | None = None) -> Settings:
    """Defaults, overlaid by the county's file (checked against the schema: every mistake is a
    ConfigError naming the setting), then the environment."""
    environ = dict(os.environ if env is None else env)
    raw, origins = load_defaults()
    path = config or environ.get("WARMLINE_CONFIG")
    if path:
        file = Path(path)
        user = _read_config(file)
        problems = check(user, raw)
        if problems:
            raise ConfigError("\n".join(f"{file}: {p}" for p in problems))
        raw = _merge(raw, user)
        source = f"your file {file}" + (" (WARMLINE_CONFIG)" if not config else "")
        for key, _value in leaves(user):
            origins[key] = source
    url = resolve_url(db or environ.get("WARMLINE_DATABASE_URL"))
    settings = Settings(database_url=url, raw=raw, env=environ, origins=origins)
    try:
        settings.timezone  # noqa: B018 - validate early
    except Exception as exc:
        raise ConfigError(f"unknown time zone: {raw['program'].get('timezone')!r}") from exc
    return settings
