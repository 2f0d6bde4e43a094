"""The `warmline` command line: a thin entry point; each command lives in `bot/commands/`.

Global options (`--db`, `--config`, `-v`) are accepted before or after the command, as people
type them. An operator's mistake — a wrong path, an unreachable database, a bad config — ends in
one line in Chinese and English and a non-zero exit code (`bot/cli_errors.py`), never a
traceback; `-v` adds the traceback for whoever is debugging.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence

import bot.commands
from bot.cli_errors import explain

GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, object]], ...] = (
    (("--db",), {"help": "database URL or SQLite file (default: WARMLINE_DATABASE_URL or ./warmline.db)"}),
    (("--config",), {"help": "program configuration TOML (default: WARMLINE_CONFIG)"}),
    (("-v", "--verbose"), {"action": "store_true", "help": "log more (never message text)"}),
)


def command_modules() -> list[str]:
    """Every module in `bot/commands/` with a `register(subparsers)`: adding a file adds a command."""
    return sorted(f"bot.commands.{m.name}" for m in pkgutil.iter_modules(bot.commands.__path__)
                  if not m.name.startswith("_"))


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command's parser, nested ones (`db upgrade`, `export family`) included."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found.append(child)
                found.extend(_subparsers(child))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmline", description="暖心 Warmline — care program chatbot")
    for flags, options in GLOBAL_OPTIONS:
        parser.add_argument(*flags, **options)  # type: ignore[arg-type]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(name).register(sub)
    # The same options after the command; SUPPRESS keeps a value given before it.
    for child in _subparsers(parser):
        taken = {s for a in child._actions for s in a.option_strings}
        for flags, options in GLOBAL_OPTIONS:
            if not taken & set(flags):
                child.add_argument(*flags, **{**options, "default": argparse.SUPPRESS})  # type: ignore[arg-type]
    return parser


def _quiet_stdout() -> None:
    """After the reader of our output went away (`| head`), write nothing more and say nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # as a shell reports a process ended by SIGPIPE
    except Exception as exc:  # every other failure: one clear line, the traceback only with -v
        lines, code = explain(exc)
        if args.verbose:
            logging.getLogger("warmline.cli").exception("command failed")
        for line in lines:
            print(line, file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
