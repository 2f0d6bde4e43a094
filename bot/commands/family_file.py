"""`warmline export family HOUSEHOLD` and `warmline erase family HOUSEHOLD`: the file leaves only
on purpose.

Export writes the household's whole file (JSON or a workbook, one sheet per section) to a file
only its owner can read, and records the export in the audit log. Erase removes the
household's personal data on the family's request, keeping the anonymous counts reports need;
it first shows what it will remove and asks for the household code (or `--yes`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.commands import open_app, output_file
from bot.reports.cells import safe_cell
from storage.audit import record_audit_sync
from storage.family_file import collect, erase
from storage.models import Household

# what `erase` reports, in words a coordinator reads
REMOVED_LABELS = {
    "members": "成员的姓名、电话、生日 / members' names, phones, birthdays",
    "channel_addresses": "成员的联系账号 / members' chat addresses",
    "consents": "消息同意记录 / message consents",
    "preferences": "消息偏好 / message preferences",
    "deceased_children": "孩子的信息 / the children's details",
    "case_file": "建档内容 / the intake file",
    "intake_draft": "建档草稿 / an intake draft",
    "visits_notes": "走访记录里的文字 / notes in visits",
    "health_readings_notes": "健康数据里的建议 / advice in readings",
    "assessments_notes": "评估里的文字 / notes in assessments",
    "service_entitlements_notes": "服务备注 / notes on services",
    "follow_ups_notes": "跟进事项的文字 / follow-up texts",
    "tasks_notes": "任务说明 / task notes",
    "family_messages": "家属发来的消息 / messages from the family",
    "outbox_messages": "提到他们的消息 / messages that named them",
    "open_conversations": "正在填写的对话 / open conversations about them",
}
KEPT = ("保留（不含个人信息）：走访的日期、方式、结果和金额，健康数据的数值，评估分数，服务状态和日期，乡镇。\n"
        "Kept (no personal data): visits' dates, kinds, outcomes and money; reading values; assessment "
        "scores; service statuses and dates; the township.")
SHEETS = {"household": "家庭", "contact_volunteers": "联系志愿者", "members": "成员",
          "deceased_children": "子女", "case_file": "档案", "assessments": "评估", "services": "服务与保障",
          "visits": "走访", "health_readings": "健康数据", "follow_ups": "跟进事项", "tasks": "任务",
          "family_messages": "家属消息"}


class _DryRun(Exception):
    """Raised inside the unit of work to roll back a preview."""


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="write a household's whole file (JSON or XLSX)")
    export_sub = export.add_subparsers(dest="what", required=True, metavar="WHAT")
    family = export_sub.add_parser("family", help="one household's whole file")
    family.add_argument("household", metavar="HOUSEHOLD", help="household code (户编号)")
    family.add_argument("--format", choices=("json", "xlsx"), default="json")
    family.add_argument("--out", help="file to write (default: family-HOUSEHOLD.json|xlsx)")
    family.set_defaults(func=run_export)

    erase_parser = sub.add_parser("erase", help="remove a household's personal data on request")
    erase_sub = erase_parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    family = erase_sub.add_parser("family", help="one household's personal data")
    family.add_argument("household", metavar="HOUSEHOLD", help="household code (户编号)")
    family.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    family.set_defaults(func=run_erase)


def _find(session: Any, code: str) -> Household | None:
    household = session.scalar(select(Household).where(Household.code == code))
    if household is None:
        print(f"没有这个户编号 / unknown household: {code}", file=sys.stderr)
        return None
    if household.erased_at is not None:
        print(f"这一户的个人信息已经删除 / household already erased: {code}", file=sys.stderr)
        return None
    return household


def _write_private(path: Path, data: bytes) -> None:
    """Create the file readable by its owner only: it holds the most sensitive data there is."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return safe_cell(value)


def workbook_bytes(data: dict[str, Any]) -> bytes:
    from io import BytesIO

    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for key, title in SHEETS.items():
        sheet = book.create_sheet(title)
        section = data.get(key)
        if isinstance(section, dict):
            for name, value in section.items():
                sheet.append([name, _cell(value)])
        elif section:
            headers = list(section[0].keys())
            sheet.append(headers)
            for row in section:
                sheet.append([_cell(row.get(h)) for h in headers])
    out = BytesIO()
    book.save(out)
    return out.getvalue()


def run_export(args: argparse.Namespace) -> int:
    if args.out:
        output_file(args.out, "--out")
    app = open_app(args)
    now = app.services.now()
    with app.db.session() as session:
        household = _find(session, args.household)
        if household is None:
            return 2
        data = {"exported_at": app.services.local(now).isoformat(timespec="seconds"), **collect(session, household)}
        path = Path(args.out or f"family-{household.code}.{args.format}")
        if args.format == "json":
            _write_private(path, json.dumps(data, ensure_ascii=False, indent=1).encode())
        else:
            _write_private(path, workbook_bytes(data))
        record_audit_sync(session, actor_id=None, action="export", entity="household", entity_id=household.id,
                          household_id=household.id, detail=f"cli format={args.format}", at=now)
    print(f"已导出到 {path}（含敏感信息，请妥善保管）/ written to {path} (sensitive: keep it safe)", file=sys.stderr)
    return 0


def _report(removed: Counter[str], code: str, done: bool) -> None:
    head = f"已删除 {code} 的个人信息 / removed from {code}:" if done else f"将删除 {code} 的 / will remove from {code}:"
    print(head)
    for key, count in removed.items():
        print(f"  {REMOVED_LABELS.get(key, key)}: {count}")
    if not removed:
        print("  （没有个人信息可删 / nothing personal to remove）")
    print(KEPT)


def run_erase(args: argparse.Namespace) -> int:
    app = open_app(args)
    now = app.services.now()
    if not args.yes:
        preview: Counter[str] = Counter()
        try:
            with app.db.session() as session:
                household = _find(session, args.household)
                if household is None:
                    return 2
                preview = erase(session, household, now)
                raise _DryRun
        except _DryRun:
            pass
        _report(preview, args.household, done=False)
        if not sys.stdin.isatty():
            print("没有确认，未删除任何内容；确认请加 --yes / nothing erased: add --yes to confirm", file=sys.stderr)
            return 2
        typed = input(f"输入户编号 {args.household} 确认删除（不可恢复）/ type the code to confirm: ").strip()
        if typed != args.household:
            print("没有删除 / not erased", file=sys.stderr)
            return 1
    with app.db.session() as session:
        household = _find(session, args.household)
        if household is None:
            return 2
        removed = erase(session, household, now)
    _report(removed, args.household, done=True)
    return 0
