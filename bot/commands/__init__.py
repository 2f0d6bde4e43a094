"""CLI commands, one module per group; see `bot.cli.COMMAND_MODULES`."""

from __future__ import annotations

import argparse

from bot.app import App, build_app
from bot.config import load_settings
from bot.schema import ensure_schema


def open_app(args: argparse.Namespace) -> App:
    """Settings from the global options, the schema brought up to date, the app wired."""
    settings = load_settings(db=getattr(args, "db", None), config=getattr(args, "config", None))
    ensure_schema(settings.database_url)
    return build_app(settings)
