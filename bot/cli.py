"""The `warmline` command line: a thin entry point; each command lives in `bot/commands/`."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import bot.commands
from bot.config import ConfigError


def command_modules() -> list[str]:
    """Every module in `bot/commands/` with a `register(subparsers)`: adding a file adds a command."""
    return sorted(f"bot.commands.{m.name}" for m in pkgutil.iter_modules(bot.commands.__path__)
                  if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmline", description="暖心 Warmline — care program chatbot")
    parser.add_argument("--db", help="database URL or SQLite file (default: WARMLINE_DATABASE_URL or ./warmline.db)")
    parser.add_argument("--config", help="program configuration TOML (default: WARMLINE_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (never message text)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"配置错误 / configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
