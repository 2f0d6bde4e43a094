"""`warmline report`: the supervision report for a period, as XLSX, CSV or a printable HTML page."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from bot.commands import UsageError, open_app, output_file
from bot.reports.build import UnknownTownship
from bot.reports.charts import ChartFont, default_font
from bot.reports.model import Report
from bot.reports.periods import PeriodError, parse_period
from bot.reports.service import make_report
from bot.reports.writers import FORMATS, write_report


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="supervision report for a period (xlsx, csv, html)")
    parser.add_argument("--period", required=True,
                        help="2026-11 (month), 2026-Q3 (quarter), 2026 (year) or 2026-01-01..2026-03-31")
    parser.add_argument("--township", help="one township by name (default: the whole county)")
    parser.add_argument("--format", choices=FORMATS, help="xlsx | csv | html (default: from --out)")
    parser.add_argument("--out", help="output file; for csv a directory, or a .zip file "
                                      "(default: report-<scope>-<period>.<format> here)")
    parser.add_argument("--as-of", help="judge targets up to this day, YYYY-MM-DD (default: today)")
    parser.set_defaults(func=run)


def _format(args: argparse.Namespace) -> str | None:
    if args.format:
        return str(args.format)
    if args.out:
        suffix = Path(args.out).suffix.lower().lstrip(".")
        if suffix in FORMATS:
            return suffix
        if suffix == "zip" or not suffix:
            return "csv"
    return None


def warning_lines(report: Report, font: ChartFont, fmt: str) -> list[str]:
    """What the operator must know about this report, for stderr (charts exist only in HTML)."""
    lines = [f"提示 / note: {w}" for w in report.warnings]
    if font.warning and fmt == "html":
        lines.append(f"警告 / warning: {font.warning}")
    return lines


def _check_out(out: str, fmt: str) -> None:
    """CSV goes to a folder or a .zip; the other formats to one file (never a folder)."""
    path = Path(out)
    if fmt == "csv" and path.suffix.lower() != ".zip":
        if path.exists() and not path.is_dir():
            raise UsageError(f"--out {path} 是一个文件；CSV 报表要写到文件夹或 .zip 文件 / "
                             "is a file; a CSV report goes to a folder or a .zip file")
        return
    output_file(out, "--out")


def run(args: argparse.Namespace) -> int:
    try:
        period = parse_period(args.period)
        as_of = date.fromisoformat(args.as_of) if args.as_of else None
    except PeriodError as exc:
        print(f"{exc} / bad --period", file=sys.stderr)
        return 2
    except ValueError:
        print(f"看不懂日期：{args.as_of}（例：2026-09-30）/ bad --as-of", file=sys.stderr)
        return 2
    fmt = _format(args)
    if fmt is None:
        print("请用 --format 指定 xlsx、csv 或 html / give --format xlsx|csv|html", file=sys.stderr)
        return 2
    if args.out:
        _check_out(args.out, fmt)
    app = open_app(args)
    try:
        with app.db.session() as session:
            report = make_report(session, app.settings, period=period, now=app.services.now(),
                                 township=args.township, as_of=as_of)
    except UnknownTownship:
        print(f"没有这个乡镇 / unknown township: {args.township}", file=sys.stderr)
        return 2
    out = Path(args.out or f"report-{report.scope_label}-{period.code.replace('..', '_')}"
               + ("" if fmt == "csv" else f".{fmt}"))
    font = default_font()
    for line in warning_lines(report, font, fmt):
        print(line, file=sys.stderr)
    for path in write_report(report, fmt, out, font):
        print(path)
    return 0
