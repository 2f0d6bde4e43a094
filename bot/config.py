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
        return OffsetClock(parse_instant(start, self.timezone))


def parse_instant(text: str, tz: ZoneInfo) -> datetime:
    """An ISO instant; without an offset it is read in the program's time zone."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(f"not an ISO date-time: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value


def load_settings(db: str | None = None, config: str | None = None,
                  env: dict[str, str] | None = None) -> Settings:
    environ = dict(os.environ if env is None else env)
    raw: dict[str, Any] = {}
    for part in sorted(DEFAULTS_DIR.glob("*.toml")):  # one file per area: core.toml, policy.toml…
        raw = _merge(raw, load_toml(part))
    path = config or environ.get("WARMLINE_CONFIG")
    if path:
        file = Path(path)
        if not file.exists():
            raise ConfigError(f"configuration file not found: {file}")
        try:
            raw = _merge(raw, load_toml(file))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: {exc}") from exc
    url = resolve_url(db or environ.get("WARMLINE_DATABASE_URL"))
    settings = Settings(database_url=url, raw=raw, env=environ)
    try:
        settings.timezone  # noqa: B018 - validate early
    except Exception as exc:
        raise ConfigError(f"unknown time zone: {raw['program'].get('timezone')!r}") from exc
    return settings
