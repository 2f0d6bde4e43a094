"""CLI commands, one module per group (`register(subparsers)` adds a command), and what they share:
opening the app, reading `--at`, and checking the files an operator names."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.app import App, build_app
from bot.config import ConfigError, load_settings, parse_instant
from bot.schema import ensure_schema
from storage.db import sqlite_file


class UsageError(Exception):
    """An operator's mistake on the command line; the message is one line, Chinese / English."""


def open_app(args: argparse.Namespace) -> App:
    """Settings from the global options, the schema brought up to date, the app wired."""
    settings = load_settings(db=getattr(args, "db", None), config=getattr(args, "config", None))
    check_database_file(settings.database_url)
    ensure_schema(settings.database_url)
    return build_app(settings)


def check_database_file(url: str) -> None:
    """A SQLite path that is a folder, or a file that is not a database, is said so plainly."""
    path = sqlite_file(url)
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"--db {path} 是文件夹，请给出数据库文件名 / is a folder; give a database file name")
    if path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        raise UsageError(f"--db {path} 是只读的，暖心需要能写入数据库文件和它所在的文件夹 / "
                         "is read-only; Warmline must be able to write the file and its folder")
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise UsageError(f"--db {path} 不是暖心数据库（不是 SQLite 文件）/ is not a Warmline database (not a SQLite file)")


def parse_at(text: str, tz: ZoneInfo, option: str = "--at") -> datetime:
    """`--at` as an ISO instant, or a clear usage error with an example."""
    try:
        return parse_instant(text, tz)
    except ConfigError:
        raise UsageError(f"{option} 需要日期时间，例如 2026-12-01T09:00（不是 {text!r}）/ "
                         f"{option} needs an ISO date-time such as 2026-12-01T09:00, not {text!r}") from None


def output_file(name: str, option: str, *, force: bool = True) -> Path:
    """A file to write: never a folder; an existing file only when overwriting is allowed."""
    path = Path(name)
    if path.is_dir():
        raise UsageError(f"{option} {path} 是文件夹，请给出文件名 / is a folder; give a file name")
    if path.exists() and not force:
        raise UsageError(f"{option} {path} 已经存在，没有覆盖（要覆盖请加 --force）/ "
                         f"already exists and was not overwritten (add --force to replace it)")
    if not path.parent.exists():
        raise UsageError(f"{option} {path}: 文件夹 {path.parent} 不存在 / folder {path.parent} does not exist")
    return path
