"""`warmline outbox`: what is waiting, what went out, what failed and why.

Counts by status, channel and kind, then the latest rows with their attempts and last error.
Message text is personal: it is shown only with --with-text; addresses never (the person id is
enough to look someone up with the right permissions).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from bot.commands import open_app
from storage.models import OutboxMessage, OutboxStatus

STATUSES = [s.value for s in OutboxStatus]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("outbox", help="outbound message status: counts, latest rows, last errors")
    parser.add_argument("--status", choices=STATUSES, help="only rows in this status")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--limit", type=int, default=20, help="how many latest rows to list (default 20)")
    parser.add_argument("--with-text", action="store_true", help="also show message text (personal data)")
    parser.set_defaults(func=run)


def _when(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if value else None


def collect(session: Any, *, status: str | None, limit: int, with_text: bool,
            tz: ZoneInfo, people: Any = None) -> dict[str, Any]:
    """Counts and latest rows; `people` (a select of person ids) limits both to those people."""
    counts_q = (select(OutboxMessage.status, OutboxMessage.channel, OutboxMessage.kind,
                       func.count(OutboxMessage.id))
                .group_by(OutboxMessage.status, OutboxMessage.channel, OutboxMessage.kind)
                .order_by(OutboxMessage.status, OutboxMessage.channel, OutboxMessage.kind))
    rows_q = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(max(0, limit))
    if people is not None:
        counts_q = counts_q.where(OutboxMessage.person_id.in_(people))
        rows_q = rows_q.where(OutboxMessage.person_id.in_(people))
    if status:
        counts_q = counts_q.where(OutboxMessage.status == status)
        rows_q = rows_q.where(OutboxMessage.status == status)
    else:  # what needs an operator's eye: not yet delivered, or delivered after errors
        rows_q = rows_q.where(or_(OutboxMessage.status != OutboxStatus.SENT,
                                  OutboxMessage.last_error.is_not(None)))
    counts = [{"status": s, "channel": c, "kind": k, "count": n}
              for s, c, k, n in session.execute(counts_q)]
    rows = []
    for row in session.scalars(rows_q):
        item: dict[str, Any] = {
            "id": row.id, "status": row.status, "channel": row.channel, "kind": row.kind,
            "person_id": row.person_id, "attempts": row.attempts,
            "created": _when(row.created_at, tz), "next_attempt": _when(row.next_attempt_at, tz),
            "expires": _when(row.expires_at, tz), "sent": _when(row.sent_at, tz),
            "claimed_by": row.claimed_by, "last_error": row.last_error,
        }
        if with_text:
            item["text"] = (row.payload or {}).get("text", "")
        rows.append(item)
    return {"counts": counts, "rows": rows}


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    app = open_app(args)
    tz = app.settings.timezone
    with app.db.session() as session:
        data = collect(session, status=args.status, limit=args.limit, with_text=args.with_text, tz=tz)
    app.db.dispose()
    if args.format == "json":
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    if not data["counts"]:
        print("发件箱是空的 / the outbox is empty" + (f" (status {args.status})" if args.status else ""))
        return 0
    print(_table(["status", "channel", "kind", "count"],
                 [[c["status"], c["channel"], c["kind"], c["count"]] for c in data["counts"]]))
    if data["rows"]:
        columns = ["id", "status", "channel", "kind", "attempts", "next_attempt", "expires",
                   "claimed_by", "last_error"] + (["text"] if args.with_text else [])
        print()
        print(_table(columns, [[r.get(c) for c in columns] for r in data["rows"]]))
    return 0
