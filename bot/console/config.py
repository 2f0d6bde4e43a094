"""The console's settings (`[console]` in bot/defaults/console.toml) and its cookie key."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bot.config import ConfigError, Settings
from storage.crypto import key_file_for
from storage.db import sqlite_file


@dataclass(frozen=True)
class ConsoleConfig:
    link_ttl: timedelta
    session_ttl: timedelta
    secure_cookies: str  # "auto" | "true" | "false"
    same_site: str
    page_size: int
    max_upload_bytes: int
    public_url: str
    key: bytes

    @classmethod
    def from_settings(cls, settings: Settings, public_url: str) -> ConsoleConfig:
        c = settings.section("console")
        same_site = str(c.get("same_site", "lax")).lower()
        return cls(
            link_ttl=timedelta(minutes=float(c.get("link_minutes", 10))),
            session_ttl=timedelta(hours=float(c.get("session_hours", 12))),
            secure_cookies=str(c.get("secure_cookies", "auto")).lower(),
            same_site=same_site if same_site in {"lax", "strict"} else "lax",
            page_size=int(c.get("page_size", 50)),
            max_upload_bytes=int(c.get("max_upload_bytes", 5_000_000)),
            public_url=public_url,
            key=cookie_key(settings),
        )


def _secret(settings: Settings) -> str | None:
    secret = settings.get_env("WARMLINE_CONSOLE_SECRET") or settings.get_env("WARMLINE_DATA_KEY")
    if secret:
        return secret
    path = settings.get_env("WARMLINE_DATA_KEY_FILE")
    db_file = sqlite_file(settings.database_url)
    file = Path(path) if path else (key_file_for(db_file) if db_file is not None else None)
    return file.read_text().strip() if file is not None and file.exists() else None


def cookie_key(settings: Settings) -> bytes:
    """The key that signs cookies and CSRF tokens: WARMLINE_CONSOLE_SECRET, else derived from the
    data key (shared by every worker already), else from the key file beside a SQLite database."""
    secret = _secret(settings)
    if not secret:
        settings.keyring()  # makes the key file beside a SQLite database, or says what is missing
        secret = _secret(settings)
    if not secret:
        raise ConfigError("the web console needs WARMLINE_CONSOLE_SECRET or WARMLINE_DATA_KEY")
    return hmac.new(secret.encode(), b"warmline console cookies v1", hashlib.sha256).digest()
