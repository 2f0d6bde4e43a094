"""A broadcast: an activity invitation to every volunteer of a province, enqueued in one go.

    python benchmarks/broadcast.py [--households 100000] [--cache DIR]

On a copy of the synthetic county (benchmarks/planner_scale.py builds it; 100k households have
12,500 volunteers) an admin sends one activity to the audience "all volunteers":
`dialogs.invitations.send_invitations` — the audience resolved, one Invitation per person, one
outbox row and two button tokens each, written with `enqueue_many` (bulk INSERTs). Baseline, in
the same run on another copy: the same invitations queued the way they were before, one
`queue_message` per recipient (a key lookup, an address lookup and a flush each). Both are
timed from the call to the commit; the rows each writes are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from benchmarks.common import BENCH_DATA_KEY, START
from benchmarks.planner_scale import county_db

NOW = START.astimezone(UTC)


async def _per_recipient(session: Any, activity: Any, now: datetime, window: Any) -> int:
    """The send loop as it was: one `queue_message` per recipient."""
    from dialogs.engine.context import queue_message
    from domain.invitations import invitation_reply
    from storage.audience import resolve_audience
    from storage.models import Invitation, Person

    creator = await session.get(Person, activity.created_by_id)
    recipients = await resolve_audience(session, creator, dict(activity.audience), activity.type)
    fresh = [(r, Invitation(activity_id=activity.id, person_id=r.person_id, household_id=r.household_id,
                            channel="none", created_at=now)) for r in recipients]
    session.add_all([i for _, i in fresh])
    await session.flush()
    await window.load(session, (r.household_id for r, _ in fresh), now)
    for r, invitation in fresh:
        row = await queue_message(session, person_id=r.person_id,
                                  reply=invitation_reply(activity, invitation.id, window.timezone),
                                  kind="invitation", key=f"invite:{activity.id}:{r.person_id}", now=now,
                                  not_before=window.not_before(r.household_id, now), expires_at=activity.starts_at)
        if row is not None:
            invitation.channel = row.channel
    return len(fresh)


async def _send(url: str, bulk: bool) -> dict[str, Any]:
    from bot.care.activities import send_window
    from bot.config import load_settings
    from domain.invitations import send_invitations
    from storage.db import Database
    from storage.models import Activity, OutboxMessage, Person

    settings = load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY})
    db = Database(url, keyring=settings.keyring())
    window = send_window(settings)
    async with db.async_session() as session:
        admin = Person(name="管理员", role="admin", created_at=NOW, active=True)
        session.add(admin)
        await session.flush()
        activity = Activity(created_by_id=admin.id, type="class", title="智能手机课", created_at=NOW,
                            starts_at=NOW + timedelta(days=10), audience={"kind": "all_volunteers"})
        session.add(activity)
        await session.flush()
        activity_id = activity.id
    wall0, cpu0 = time.perf_counter(), time.process_time()
    async with db.async_session() as session:
        activity = await session.get(Activity, activity_id)
        if bulk:
            invited = (await send_invitations(session, activity, NOW, window)).invited
        else:
            invited = await _per_recipient(session, activity, NOW, window)
    out = {"recipients": invited, "wall_s": round(time.perf_counter() - wall0, 2),
           "cpu_s": round(time.process_time() - cpu0, 2)}
    async with db.async_session() as session:
        out["outbox_rows"] = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.kind == "invitation"))
    await db.adispose()
    return out


def run(households: int, cache: Path) -> dict[str, Any]:
    source = Path(county_db(households, cache).removeprefix("sqlite:///"))
    results: dict[str, Any] = {"households": households}
    with tempfile.TemporaryDirectory(prefix="wl-broadcast-") as tmp:
        for name, bulk in (("bulk", True), ("per_recipient", False)):
            target = Path(tmp) / f"{name}.db"
            shutil.copy(source, target)
            results[name] = asyncio.run(_send(f"sqlite:///{target}", bulk))
            print(f"  {name}: {results[name]}", file=sys.stderr)
    results["ratio_wall"] = results["per_recipient"]["wall_s"] / max(results["bulk"]["wall_s"], 1e-9)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--cache", default="/tmp/warmline-bench")
    args = parser.parse_args(argv)
    results = run(args.households, Path(args.cache))
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
