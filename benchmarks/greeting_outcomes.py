"""A festival morning's delivered greetings becoming contacts: `note_outcomes` in bulk vs one by one.

    python benchmarks/greeting_outcomes.py [--households 10000] [--cache DIR]

On a copy of the synthetic county (benchmarks/planner_scale.py builds it) every parent gets a
mid-autumn greeting whose outbox row was delivered (and one in twenty expired), as after a
festival morning's sending. Then the greetings job's first step turns them into contacts
(`bot.care.greetings.note_outcomes`: one Visit per delivered greeting, statuses noted). Baseline,
in the same run on another copy: the same step as it was before, a query for the member and a
flush per delivered greeting (kept below as `_one_by_one`). Both are timed from the call to the
commit (CPU and wall), and their results compared: the same visits, the same statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select

from benchmarks.common import BENCH_DATA_KEY, SHANGHAI
from benchmarks.planner_scale import county_db

DELIVERED_AT = datetime(2026, 9, 25, 9, 30, tzinfo=SHANGHAI)  # 中秋 2026


def _seed(url: str) -> int:
    """A delivered (or expired) mid-autumn greeting to every parent; how many."""
    from bot.config import load_settings
    from storage.db import Database
    from storage.models import Greeting, HouseholdMember, OutboxMessage, OutboxStatus

    settings = load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY})
    db = Database(url, keyring=settings.keyring())
    sent_at = DELIVERED_AT.astimezone(UTC)
    with db.session() as session:
        parents = session.execute(select(HouseholdMember.household_id, HouseholdMember.person_id)
                                  .where(HouseholdMember.relation.in_(("father", "mother")))
                                  .order_by(HouseholdMember.id)).all()
        for i in range(0, len(parents), 2000):
            part = parents[i:i + 2000]
            rows = [{"idempotency_key": f"bench-greeting:{pid}", "channel": "telegram", "address": f"g{pid}",
                     "person_id": pid, "kind": "greeting", "payload": {"text": "中秋", "options": []},
                     "status": OutboxStatus.EXPIRED if n % 20 == 0 else OutboxStatus.SENT, "priority": 2,
                     "attempts": 1, "not_before": sent_at, "next_attempt_at": sent_at, "created_at": sent_at,
                     "sent_at": None if n % 20 == 0 else sent_at} for n, (_h, pid) in enumerate(part, start=i)]
            ids = session.scalars(insert(OutboxMessage).returning(OutboxMessage.id, sort_by_parameter_order=True),
                                  rows).all()
            session.execute(insert(Greeting), [
                {"household_id": hid, "member_person_id": pid, "occasion": "mid_autumn", "year": 2026,
                 "channel": "telegram", "outbox_id": oid, "status": "planned", "created_at": sent_at,
                 "occasion_on": DELIVERED_AT.date()} for (hid, pid), oid in zip(part, ids, strict=True)])
    db.dispose()
    return len(parents)


async def _one_by_one(session: Any, at: datetime, tz: Any) -> dict[str, int]:
    """`note_outcomes` as it was: a query and a flush per delivered greeting."""
    from bot.care.greetings import PLANNED, SENT, SOURCE
    from storage.models import (
        Greeting,
        HouseholdMember,
        OutboxMessage,
        OutboxStatus,
        Visit,
        VisitKind,
        VisitOutcome,
    )

    counts = {"delivered": 0, "expired": 0, "failed": 0}
    rows = (await session.execute(
        select(Greeting, OutboxMessage).join(OutboxMessage, OutboxMessage.id == Greeting.outbox_id)
        .where(Greeting.status == PLANNED,
               OutboxMessage.status.in_((OutboxStatus.SENT, OutboxStatus.EXPIRED, OutboxStatus.FAILED)))
        .order_by(Greeting.id))).all()
    for greeting, outbox in rows:
        if outbox.status != OutboxStatus.SENT:
            greeting.status = outbox.status
            counts["expired" if outbox.status == OutboxStatus.EXPIRED else "failed"] += 1
            continue
        member_id = await session.scalar(select(HouseholdMember.id).where(
            HouseholdMember.household_id == greeting.household_id,
            HouseholdMember.person_id == greeting.member_person_id))
        visit = Visit(household_id=greeting.household_id, member_id=member_id, volunteer_id=None,
                      visited_on=(outbox.sent_at or at).astimezone(tz).date(), kind=VisitKind.MESSAGE,
                      occasion=greeting.occasion, outcome=VisitOutcome.DONE, source=SOURCE, recorded_at=at)
        session.add(visit)
        await session.flush()
        greeting.status = SENT
        greeting.visit_id = visit.id
        counts["delivered"] += 1
    return counts


def _measure(url: str, bulk: bool) -> dict[str, Any]:
    from bot.app import build_app
    from bot.care.greetings import note_outcomes
    from bot.config import load_settings
    from storage.models import Greeting, Visit

    app = build_app(load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY}))
    at = DELIVERED_AT + timedelta(minutes=30)

    async def once() -> dict[str, Any]:
        wall, cpu = time.perf_counter(), time.process_time()
        async with app.db.async_session() as session:
            if bulk:
                report = await note_outcomes(session, at, SHANGHAI)
                counts = {"delivered": report.delivered, "expired": report.expired, "failed": report.failed}
            else:
                counts = await _one_by_one(session, at, SHANGHAI)
        out = {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3), **counts}
        async with app.db.async_session() as session:  # what was written, to compare the two
            visits = (await session.execute(select(Visit.household_id, Visit.member_id, Visit.visited_on,
                                                   Visit.occasion).where(Visit.source == "greeting"))).all()
            linked = (await session.execute(select(Greeting.member_person_id, Greeting.status, Visit.member_id)
                                            .outerjoin(Visit, Visit.id == Greeting.visit_id))).all()
        out["_result"] = sorted(map(tuple, visits)), sorted(map(tuple, linked), key=repr)
        await app.db.adispose()
        return out

    return asyncio.run(once())


def run(households: int, cache: Path) -> dict[str, Any]:
    source = Path(county_db(households, cache).removeprefix("sqlite:///"))
    results: dict[str, Any] = {"households": households, "load_average": [round(os.getloadavg()[0], 2)]}
    with tempfile.TemporaryDirectory(prefix="wl-greet-") as tmp:
        for name, bulk in (("bulk", True), ("one_by_one", False)):
            target = Path(tmp) / f"{name}.db"
            shutil.copy(source, target)
            results["greetings"] = _seed(f"sqlite:///{target}")
            results[name] = _measure(f"sqlite:///{target}", bulk)
            target.unlink()
    same = results["bulk"].pop("_result") == results["one_by_one"].pop("_result")
    results["same_result"] = same
    results["cpu_ratio"] = round(results["one_by_one"]["cpu_s"] / max(results["bulk"]["cpu_s"], 1e-9), 1)
    results["load_average"].append(round(os.getloadavg()[0], 2))
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=10_000, help="the county (every parent is greeted)")
    parser.add_argument("--cache", default="/tmp/warmline-bench", help="where the synthetic counties are kept")
    args = parser.parse_args(argv)
    results = run(args.households, Path(args.cache))
    json.dump(results, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return results


if __name__ == "__main__":
    main()
