"""Delivery under faults: a 429 burst during a broadcast, and `warmline run` SIGKILLed mid-broadcast.

    python benchmarks/delivery_faults.py [--db sqlite|postgres] [--only burst|kill]

**burst** — the real DeliveryWorker (default settings, both lanes) and TelegramSender over
python-telegram-bot send a broadcast to `--broadcast` chats through the fake Bot API
(tests/fakes/telegram_api.py, in this process). Two seconds in, Telegram refuses a burst of
sends with 429 "retry after 1" — the next `--burst` broadcast chats due, once each — and each
of `--replies` people gets a reply through the fast path while their own chat is refused once
with retry_after=1. Measured per refused reply: seconds from the refused call to the accepted one
(target ≤ retry_after + 1 = 2 s). Baseline in the same run: replies to other people sent through
the fast path during the same broadcast without a 429 (their latency from the step's commit).
Also: the broadcast's rate, lost messages, duplicates.

**kill** — `warmline run` (polling the fake Bot API, scheduler off) starts on an outbox holding a
broadcast to 120 chats, is SIGKILLed once `--kill-after` messages were accepted, and is started
again at once. Measured: messages lost (0 is the target), duplicates (bounded by what the killed
process had claimed and in flight), and seconds from the restart until every chat has its message
(target ≤ 15 s; the killed process's claimed rows come back when its lease lapses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common
from benchmarks.delivery_rate import bench_database

BROADCAST_BASE = 700_000
REPLY_BASE = 800_000
QUIET_BASE = 900_000


def fill_broadcast(url: str, count: int, base: int) -> None:
    from sqlalchemy import insert

    from storage.models import OutboxLane, OutboxMessage

    now = datetime.now(UTC)
    db = bench_database(url)
    with db.session() as s:
        s.execute(insert(OutboxMessage), [
            {"idempotency_key": f"bench-bc:{i}", "channel": "telegram", "address": str(base + i),
             "kind": "broadcast", "priority": int(OutboxLane.BULK),
             "payload": {"text": f"活动通知 #{i}", "options": []}, "status": "queued", "attempts": 0,
             "not_before": now, "next_attempt_at": now, "created_at": now}
            for i in range(count)])
    db.dispose()


def statuses(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from storage.models import OutboxMessage

    db = bench_database(url)
    with db.session() as s:
        out = dict(s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
    db.dispose()
    return {str(k): int(v) for k, v in out.items()}


def accepted(api: Any, chat: int) -> list[float]:
    return [c.at for c in api.calls_of("sendMessage", chat) if c.status == 200]


# ------------------------------------------------------------------------- burst


async def _reply(app: Any, sender: Any, chat: int, text: str) -> tuple[float, list[Any]]:
    """A step's reply as the runner writes and the channel sends it: commit, then the fast path."""
    from bot.delivery.fastpath import deliver_now
    from dialogs.engine.types import Outgoing
    from storage import outbox
    from storage.base import utcnow

    async with app.db.async_session() as session:
        row = await outbox.enqueue(
            session, kind="reply", recipient=outbox.Recipient("telegram", str(chat)),
            payload={"text": text, "options": []}, key=f"bench-reply:{chat}", now=utcnow(),
            once=False, claimed_by=outbox.this_process())
        assert row is not None
        outgoing = [Outgoing(row.id, row.channel, row.address, row.payload)]
    committed = time.monotonic()
    return committed, await deliver_now(app.db, sender, outgoing, utcnow)


async def burst(url: str, broadcast: int, replies: int, burst_calls: int) -> dict[str, Any]:
    from telegram import Bot
    from telegram.request import HTTPXRequest

    from bot.app import build_app
    from bot.channels.telegram_sender import TelegramSender
    from bot.config import load_settings
    from bot.delivery.worker import DeliveryWorker
    from tests.fakes.telegram_api import FakeBotAPI

    fill_broadcast(url, broadcast, BROADCAST_BASE)
    api = FakeBotAPI().start()
    app = build_app(load_settings(db=url, env={"WARMLINE_DATA_KEY": common.BENCH_DATA_KEY}))
    bot = Bot(api.token, base_url=f"{api.base_url}/bot", request=HTTPXRequest(connection_pool_size=32))
    await bot.initialize()
    sender = TelegramSender(bot)
    stop = asyncio.Event()
    worker = DeliveryWorker.from_app(app, {"telegram": sender}, stop=stop)
    started = time.monotonic()
    running = asyncio.ensure_future(worker.run())
    try:
        await asyncio.sleep(2.0)
        # the burst: Telegram refuses with retry_after=1 the next broadcast chats due and each
        # measured person's chat, once each
        done = len({int(c.params["chat_id"]) for c in api.calls_of("sendMessage")})
        for chat in [*range(BROADCAST_BASE + done + 8, BROADCAST_BASE + done + 8 + burst_calls),
                     *range(REPLY_BASE, REPLY_BASE + replies)]:
            api.fail("sendMessage", 429, "Too Many Requests: retry after 1", chat_id=chat, retry_after=1)
        refused = await asyncio.gather(*(_reply(app, sender, REPLY_BASE + i, f"已记录 #{i}")
                                         for i in range(replies)))
        await asyncio.sleep(1.5)  # bulk is sending again: now replies without a 429 (the baseline)
        quiet: list[float] = []
        for i in range(replies):
            committed, results = await _reply(app, sender, QUIET_BASE + i, f"好的 #{i}")
            if results and results[-1].ok:
                quiet.append(accepted(api, QUIET_BASE + i)[0] - committed)
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + broadcast / 25 + 60
        while statuses(url).get("sent", 0) < broadcast + 2 * replies and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        await running
        await bot.shutdown()
        await app.db.adispose()
        api.stop()

    delays, not_refused = [], 0
    for i, (_committed, results) in enumerate(refused):
        chat = REPLY_BASE + i
        if not results or results[0].retry_after is None:
            not_refused += 1
            continue
        refused_at = next(c.at for c in api.calls_of("sendMessage", chat) if c.status == 429)
        ok = accepted(api, chat)
        delays.append(ok[0] - refused_at if ok else float("inf"))
    delays.sort()
    quiet.sort()
    bulk_chats = Counter(int(c.params["chat_id"]) for c in api.calls_of("sendMessage")
                         if c.status == 200 and BROADCAST_BASE <= int(c.params["chat_id"]) < REPLY_BASE)
    return {
        "broadcast": broadcast, "replies_refused": len(delays), "burst_429": burst_calls,
        "refused_reply_delay_s": {"p50": round(common.percentile(delays, 50), 3), "max": round(delays[-1], 3)},
        "target_max_s": 2.0,
        "baseline_reply_latency_s": {"p50": round(common.percentile(quiet, 50), 3),
                                     "max": round(quiet[-1], 3) if quiet else None},
        "delay_over_retry_after_p50_s": round(common.percentile(delays, 50) - 1.0, 3),
        "broadcast_lost": broadcast - len(bulk_chats),
        "broadcast_duplicates": sum(n - 1 for n in bulk_chats.values()),
        "status_429_total": len([c for c in api.calls_of("sendMessage") if c.status == 429]),
        "all_sent_s": round(elapsed, 1), "final_statuses": statuses(url),
    }


# -------------------------------------------------------------------------- kill

KILL_CONFIG = """
[telegram]
poll_timeout_seconds = 1
"""  # [delivery] at its defaults


def _warmline_run(url: str, api: Any, config: Path, log: Path) -> subprocess.Popen[bytes]:
    from tests.fakes.telegram_api import free_port

    env = {**os.environ, "WARMLINE_TELEGRAM_TOKEN": api.token, "WARMLINE_TELEGRAM_BASE_URL": api.base_url,
           "WARMLINE_DATABASE_URL": url, "WARMLINE_DATA_KEY": common.BENCH_DATA_KEY,
           "WARMLINE_CONFIG": str(config), "WARMLINE_HTTP_PORT": str(free_port())}
    env.pop("WARMLINE_NOW", None)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--no-scheduler"], cwd=common.ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def kill(url: str, recipients: int, kill_after: int, workdir: Path) -> dict[str, Any]:
    from tests.fakes.telegram_api import FakeBotAPI

    fill_broadcast(url, recipients, BROADCAST_BASE)
    config = workdir / "warmline.toml"
    config.write_text(KILL_CONFIG)
    log = workdir / "run.log"
    api = FakeBotAPI().start()

    def delivered() -> Counter[int]:
        return Counter(int(c.params["chat_id"]) for c in api.calls_of("sendMessage") if c.status == 200)

    launched = time.monotonic()
    first = _warmline_run(url, api, config, log)
    second: subprocess.Popen[bytes] | None = None
    cold_start: float | None = None
    try:
        deadline = time.monotonic() + 60
        while sum(delivered().values()) < kill_after:
            if cold_start is None and delivered():
                cold_start = time.monotonic() - launched
            if time.monotonic() > deadline:
                raise RuntimeError(f"warmline run did not start sending; see {log}")
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = sum(delivered().values())
        held = statuses(url).get("sending", 0)
        second = _warmline_run(url, api, config, log)
        restarted = time.monotonic()
        deadline = restarted + 60
        first_after: float | None = None
        while len(delivered()) < recipients and time.monotonic() < deadline:
            if first_after is None and sum(delivered().values()) > at_kill:
                first_after = time.monotonic() - restarted
            time.sleep(0.02)
        all_in = time.monotonic() - restarted
        time.sleep(1.0)  # the last results committed
        final = statuses(url)
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        api.stop()
    got = delivered()
    return {
        "recipients": recipients, "accepted_before_kill": at_kill, "claimed_at_kill": held,
        "lost": recipients - len(got), "duplicates": sum(n - 1 for n in got.values()),
        "first_send_after_start_s": round(cold_start or 0.0, 2),
        "first_send_after_restart_s": round(first_after or 0.0, 2),
        "all_sent_after_restart_s": round(all_in, 2), "target_s": 15.0, "final_statuses": final,
    }


# -------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--only", choices=("burst", "kill"))
    parser.add_argument("--broadcast", type=int, default=300)
    parser.add_argument("--replies", type=int, default=10)
    parser.add_argument("--burst", type=int, default=20, help="broadcast chats refused once in the burst")
    parser.add_argument("--recipients", type=int, default=120)
    parser.add_argument("--kill-after", type=int, default=40)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": common.machine(), "db": args.db}
    for scenario in ("burst", "kill"):
        if args.only not in (None, scenario):
            continue
        with tempfile.TemporaryDirectory(prefix="wl-faults-") as tmp:
            pg: common.PgDatabase | None = None
            if args.db == "postgres":
                server = common.postgres_url()
                if server is None:
                    raise SystemExit("no PostgreSQL server answers (WARMLINE_BENCH_PG_URL)")
                pg = common.PgDatabase.create(server)
                url = pg.url
            else:
                url = common.fresh_sqlite(Path(tmp) / "faults.db")
            try:
                if scenario == "burst":
                    results["burst"] = asyncio.run(burst(url, args.broadcast, args.replies, args.burst))
                else:
                    results["kill"] = kill(url, args.recipients, args.kill_after, Path(tmp))
            finally:
                if pg is not None:
                    pg.drop()
        print(json.dumps({scenario: results[scenario]}, ensure_ascii=False, indent=2), flush=True)
    return results


if __name__ == "__main__":
    main()
