"""Dialog throughput: complete visit reports driven as Telegram updates, Warmline vs the usual way.

    python benchmarks/dialog_throughput.py [--volunteers 200] [--rounds 2] [--no-postgres]

Warmline: each update goes through python-telegram-bot's real `Application.process_update`
into `TelegramChannel.handle_update` — the runner's step (one transaction, committed), then the
fast path sends the replies through `TelegramSender` and records them as sent.
Baseline (benchmarks/ptb_baseline.py): the same dialog as a PTB `ConversationHandler` with
`PicklePersistence` flushed after every update.

Both send their replies through the real `telegram.Bot` to the same in-memory Bot API
(benchmarks/local_bot_api.py: no sockets), and Warmline's 30 messages/s sending pace — a
Telegram limit, measured in delivery_rate.py — is switched off, so both sides are measured on
their own work. Updates are typed answers (numbers and words), one at a time on one core:
latency is the time from the update's JSON to its last reply handed to the Bot API (plus the
baseline's flush). The two sides run interleaved, wave by wave, in one process, so machine
load affects both alike; CPU seconds are reported beside wall seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BENCH_DATA_KEY,
    START,
    MovingClock,
    PgDatabase,
    fresh_sqlite,
    percentile,
    postgres_url,
)

STEPS = ("走访记录", "1", "1", "1", "1", "1", "1", "无", "0", "2", "1")  # start … save
WARMLINE_CHAT, BASELINE_CHAT, RUNNER_CHAT = 10_000, 20_000, 30_000
WARMUP = 20  # volunteers whose one visit report warms each side up (not measured)
_update_ids = itertools.count(1)


def update_json(chat_id: int, text: str) -> dict[str, Any]:
    uid = next(_update_ids)
    return {"update_id": uid, "message": {
        "message_id": uid, "date": int(START.timestamp()), "text": text,
        "chat": {"id": chat_id, "type": "private", "first_name": "志愿者"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "志愿者"}}}


def prepare(url: str, volunteers: int) -> None:
    """A synthetic county (8 households per volunteer) with each volunteer reachable on both sides."""
    from sqlalchemy import insert

    from benchmarks.synthetic import build_county
    from storage.db import Database
    from storage.models import ChannelAddress

    db = Database(url)
    build_county(db, volunteers * 8, today=START.date())
    with db.session() as s:
        s.execute(insert(ChannelAddress), [
            {"person_id": v, "channel": channel, "address": str(base + v), "created_at": START}
            for v in range(1, volunteers + 1)
            for channel, base in (("telegram", WARMLINE_CHAT), ("ptb", BASELINE_CHAT),
                                  ("telegram", RUNNER_CHAT))])
    db.dispose()


class WarmlineSide:
    def __init__(self, url: str) -> None:
        from telegram.ext import ApplicationBuilder

        from benchmarks.local_bot_api import LocalBotAPI
        from bot.app import build_app
        from bot.channels.telegram import TelegramChannel, TelegramConfig
        from bot.config import load_settings
        from dialogs.engine.flood import FloodGuard

        self.app = build_app(load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY}),
                             clock=MovingClock())
        self.request = LocalBotAPI()
        self.application = (ApplicationBuilder().token("7000001:warmline").request(self.request)
                            .get_updates_request(LocalBotAPI()).updater(None).build())
        self.channel = TelegramChannel(self.app, TelegramConfig(token="7000001:warmline"),
                                       application=self.application)
        self.channel.sender()._pacer.interval = 0.0  # the 30/s Telegram pace: see delivery_rate.py
        # Benchmark volunteers type faster than people: the per-sender flood guard (20 messages
        # in 10 s) would drop their steps. Same check, limit out of reach.
        self.app.runner.flood = FloodGuard(max_messages=1_000_000)

    async def initialize(self) -> None:
        await self.application.initialize()

    async def shutdown(self) -> None:
        await self.application.shutdown()
        await self.app.db.adispose()

    async def process(self, data: dict[str, Any]) -> None:
        from telegram import Update

        await self.application.process_update(Update.de_json(data, self.application.bot))


class RunnerOnly:
    """Warmline's runner alone (`Runner.handle`): the step's transaction, no PTB, no sending.

    Not a comparison row: it shows how much of a Telegram step is the runner's own work."""

    def __init__(self, warmline: WarmlineSide) -> None:
        self.runner = warmline.app.runner

    async def process(self, data: dict[str, Any]) -> None:
        from dialogs.engine.types import Inbound

        message = data["message"]
        await self.runner.handle(Inbound("telegram", str(message["chat"]["id"]), text=message["text"],
                                         message_id=f"u{data['update_id']}"))


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.wall = 0.0
        self.cpu = 0.0  # the whole process (SQLite's checkpoint thread too)
        self.loop_cpu = 0.0  # the event loop's thread alone: what "on one core" asks about

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        n = len(lat)
        return {"steps": n, "wall_s": round(self.wall, 2), "cpu_s": round(self.cpu, 2),
                "steps_per_s": round(n / self.wall, 1) if self.wall else 0,
                "steps_per_cpu_s": round(n / self.cpu, 1) if self.cpu else 0,
                "steps_per_loop_cpu_s": round(n / self.loop_cpu, 1) if self.loop_cpu else 0,
                "p50_ms": round(percentile(lat, 50) * 1000, 2),
                "p99_ms": round(percentile(lat, 99) * 1000, 2),
                "max_ms": round(lat[-1] * 1000, 2) if lat else 0}


async def wave(side: Any, base: int, volunteers: int, tally: Tally | None) -> None:
    """Every volunteer completes one visit report, step by step in turn (many open sessions)."""
    wall0, cpu0, loop0 = time.perf_counter(), time.process_time(), time.thread_time()
    for text in STEPS:
        for v in range(1, volunteers + 1):
            data = update_json(base + v, text)
            t0 = time.perf_counter()
            await side.process(data)
            if tally is not None:
                tally.latencies.append(time.perf_counter() - t0)
    if tally is not None:
        tally.wall += time.perf_counter() - wall0
        tally.cpu += time.process_time() - cpu0
        tally.loop_cpu += time.thread_time() - loop0


def count_saved(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from storage.db import Database
    from storage.models import Visit

    db = Database(url)
    with db.session() as s:
        out = dict(s.execute(select(Visit.source, func.count()).where(
            Visit.source.in_(("dialog", "baseline"))).group_by(Visit.source)).all())
    db.dispose()
    return out


async def statements_per_step(side: WarmlineSide, chat: int) -> float:
    """SQL statements Warmline runs for one whole visit report, per step (counted separately)."""
    from sqlalchemy import event

    from storage.prepared import statements_run

    count = 0

    def tick(*_a: Any) -> None:
        nonlocal count
        count += 1

    engine = side.app.db.async_engine.sync_engine
    event.listen(engine, "before_cursor_execute", tick)
    prepared_before = statements_run()  # the hot path's own, run on the driver connection
    for text in STEPS:
        await side.process(update_json(chat, text))
    event.remove(engine, "before_cursor_execute", tick)
    return (count + statements_run() - prepared_before) / len(STEPS)


async def run_backend(url: str, volunteers: int, rounds: int, workdir: Path) -> dict[str, Any]:
    from benchmarks.ptb_baseline import BaselineVisitBot
    from storage.db import Database

    prepare(url, volunteers + WARMUP + 1)
    warmline = WarmlineSide(url)
    baseline_db = Database(url, keyring=warmline.app.db.keyring)  # encrypts the same columns
    baseline = BaselineVisitBot(baseline_db, workdir / f"baseline-{time.monotonic_ns()}.pickle", START.date())
    await warmline.initialize()
    await baseline.initialize()
    tallies = {"warmline": Tally(), "baseline": Tally(), "runner_only": Tally()}
    sides = {"warmline": (warmline, WARMLINE_CHAT), "baseline": (baseline, BASELINE_CHAT),
             "runner_only": (RunnerOnly(warmline), RUNNER_CHAT)}
    for side, base in sides.values():  # warm-up: caches, compiled statements (these chats only)
        await wave(side, base + volunteers, WARMUP, None)
    # As `warmline run` does once started: what start-up loaded is kept out of the collector's
    # full passes (without it the worst step was a full collection, 70–90 ms). Both sides run
    # in this process, so both gain alike.
    gc.collect()
    gc.freeze()
    for r in range(rounds):
        order = ["warmline", "baseline", "runner_only"] if r % 2 == 0 else ["runner_only", "baseline", "warmline"]
        for name in order:
            side, base = sides[name]
            await wave(side, base, volunteers, tallies[name])
    gc.unfreeze()
    per_step = await statements_per_step(warmline, WARMLINE_CHAT + volunteers + WARMUP + 1)
    calls = dict(warmline.request.calls), dict(baseline.request.calls)
    await warmline.shutdown()
    await baseline.shutdown()
    await baseline_db.adispose()
    saved = count_saved(url)
    expected = volunteers * rounds + WARMUP
    return {
        "warmline": tallies["warmline"].summary(), "baseline": tallies["baseline"].summary(),
        "runner_only": tallies["runner_only"].summary(),
        "dialogs_per_side": volunteers * rounds, "volunteers": volunteers,
        "visits_saved": saved, "visits_expected_per_side": expected,
        "complete": saved.get("baseline") == expected and saved.get("dialog") == 2 * expected + 1,
        "warmline_sql_per_step": round(per_step, 1),
        "bot_api_calls": {"warmline": calls[0], "baseline": calls[1]},
    }


async def run(volunteers: int, rounds: int, postgres: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wl-dialog-") as tmp:
        workdir = Path(tmp)
        results["sqlite"] = await run_backend(fresh_sqlite(workdir / "dialog.db"), volunteers, rounds, workdir)
        server = postgres_url() if postgres else None
        if server is None:
            results["postgresql"] = {"skipped": "no PostgreSQL server reachable" if postgres else "--no-postgres"}
        else:
            pg = PgDatabase.create(server)
            try:
                results["postgresql"] = await run_backend(pg.url, volunteers, rounds, workdir)
            finally:
                pg.drop()
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, default=200, help="volunteers reporting side by side")
    parser.add_argument("--rounds", type=int, default=2, help="measured visit reports per volunteer")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.volunteers, args.rounds, not args.no_postgres))
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
