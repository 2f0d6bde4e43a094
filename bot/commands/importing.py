"""`warmline import families|volunteers FILE [--dry-run]` and `warmline import --template KIND`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy.orm import Session

from bot.commands import open_app, output_file
from bot.imports import (
    ImportError_,
    import_families,
    import_volunteers,
    read_rows,
    records,
    summary,
    write_template,
)

KINDS = ("families", "volunteers")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("import", help="import the county's family or volunteer list (CSV/XLSX)")
    parser.add_argument("kind", nargs="?", choices=KINDS, help="what the file lists")
    parser.add_argument("file", nargs="?", help="a .csv or .xlsx file")
    parser.add_argument("--dry-run", action="store_true", help="check and report, change nothing")
    parser.add_argument("--template", choices=KINDS, help="write an empty template with the Chinese headers")
    parser.add_argument("-o", "--output", help="template file (default KIND-template.csv; .xlsx for Excel)")
    parser.add_argument("--force", action="store_true", help="with --template: replace an existing file")
    parser.add_argument("--county", help="county name, for townships not yet in the database "
                                         "(default: [county] name in the configuration)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.template:
        path = output_file(args.output or f"{args.template}-template.csv", "-o", force=args.force)
        write_template(args.template, path)
        print(f"模板已写入 / template written: {path}")
        return 0
    if not args.kind or not args.file:
        print("用法 / usage: warmline import families|volunteers FILE [--dry-run]", file=sys.stderr)
        return 2
    path = Path(args.file)
    if not path.exists():
        print(f"找不到文件 / file not found: {path}", file=sys.stderr)
        return 2
    if path.is_dir():
        print(f"{path} 是文件夹，请给出 .csv 或 .xlsx 文件 / is a folder; give a .csv or .xlsx file", file=sys.stderr)
        return 2
    try:
        rows = records(args.kind, read_rows(path))
    except ImportError_ as exc:
        print(f"无法导入 / cannot import: {exc}", file=sys.stderr)
        return 1
    app = open_app(args)
    now = app.services.now()
    county = args.county or str(app.settings.section("county").get("name") or "").strip() or None
    with Session(app.db.sync_engine, expire_on_commit=False) as session:
        if args.kind == "families":
            report = import_families(session, rows, now=now, today=app.services.today(), county=county)
        else:
            report = import_volunteers(session, rows, now=now, county=county)
        if report.errors or args.dry_run:
            session.rollback()
        else:
            session.commit()
    for error in report.errors:
        print(error, file=sys.stderr)
    if report.errors:
        print(f"有 {len(report.errors)} 处错误，什么都没有导入 / {len(report.errors)} problems; nothing was imported",
              file=sys.stderr)
        return 1
    for line in summary(report):
        print(line)
    if args.dry_run:
        print(f"试运行：{report.rows} 行都可以导入，没有改动数据库 / dry run: all {report.rows} rows are fine; nothing changed")
    else:
        print(f"已导入 {report.rows} 行 / imported {report.rows} rows")
    return 0
