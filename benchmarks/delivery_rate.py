"""Delivery rate: N queued messages through the real delivery worker and TelegramSender, to a
fake Bot API that enforces Telegram's limits (30 messages/s overall, 1/s per chat, 429 beyond).

    python benchmarks/delivery_rate.py [--messages 3000] [--chats 1000]

The outbox is filled with `--messages` rows (a broadcast to `--chats` chats, several messages
to each, interleaved, each text numbered), then `DeliveryWorker` (default settings from
bot/defaults/delivery.toml) sends them with `TelegramSender` over python-telegram-bot's own
HTTP client to benchmarks/limited_bot_api.py, running as a separate process on 127.0.0.1.
Reported: the achieved rate between the first and the last accepted message as a share of the
30/s limit, the 429s provoked, rows lost (not sent, or sent but never accepted), duplicates,
and messages to one chat delivered out of order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH_DATA_KEY, fresh_sqlite

TOKEN = "7000002:rate-limited"
LIMIT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_database(url: str) -> Any:
    """The benchmark's database with its data key (outbox bodies are encrypted at rest)."""
    from bot.config import load_settings
    from storage.db import Database

    return Database(url, keyring=load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY}).keyring())


def fill_outbox(url: str, messages: int, chats: int) -> None:
    from sqlalchemy import insert

    from storage.models import OutboxMessage

    now = datetime.now(UTC)
    db = bench_database(url)
    with db.session() as s:
        s.execute(insert(OutboxMessage), [
            {"idempotency_key": f"bench:{i}", "channel": "telegram", "address": str(500_000 + i % chats),
             "kind": "greeting", "payload": {"text": f"节日问候 #{i}", "options": []},
             "status": "queued", "attempts": 0, "next_attempt_at": now, "created_at": now}
            for i in range(1, messages + 1)])
    db.dispose()


def outbox_statuses(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from storage.models import OutboxMessage

    db = bench_database(url)
    with db.session() as s:
        out = dict(s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
    db.dispose()
    return out


async def deliver(url: str, api: str, messages: int, timeout: float, margin: float) -> dict[str, Any]:
    from bot.app import build_app
    from bot.channels.telegram import TelegramConfig, build_application
    from bot.channels.telegram_sender import TelegramSender
    from bot.config import load_settings
    from bot.delivery.worker import DeliveryWorker

    app = build_app(load_settings(db=url, env={"WARMLINE_DATA_KEY": BENCH_DATA_KEY}))
    application = build_application(TelegramConfig(token=TOKEN, base_url=api))
    await application.initialize()
    stop = asyncio.Event()
    sender = TelegramSender(application.bot)
    if margin:  # what-if: pace a little under Telegram's limits (see BENCHMARKS.md)
        from bot.channels.telegram_sender import _Pacer
        from bot.delivery.base import RateLimit

        sender.limits = RateLimit(sender.limits.per_second * (1 - margin),
                                  sender.limits.per_recipient_interval * (1 + margin))
        sender._pacer = _Pacer(sender.limits.per_second)
    worker = DeliveryWorker.from_app(app, {"telegram": sender}, stop=stop)
    started = time.monotonic()
    task = asyncio.create_task(worker.run())
    try:
        while time.monotonic() - started < timeout:
            await asyncio.sleep(1.0)
            if outbox_statuses(url).get("sent", 0) >= messages:
                break
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await application.shutdown()
        await app.db.adispose()
    return {"worker_seconds": time.monotonic() - started}


def run(messages: int, chats: int, margin: float = 0.0) -> dict[str, Any]:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("limited_bot_api.py")),
                               "--port", str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{api}/stats", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="wl-delivery-") as tmp:
            url = fresh_sqlite(Path(tmp) / "delivery.db")
            fill_outbox(url, messages, chats)
            timing = asyncio.run(deliver(url, api, messages, timeout=messages / LIMIT * 3 + 60,
                                         margin=margin))
            statuses = outbox_statuses(url)
        seen = httpx.get(f"{api}/stats", timeout=5).json()
    finally:
        server.terminate()
        server.wait(10)
    span = (seen["last"] - seen["first"]) if seen["accepted"] > 1 else 0.0
    rate = (seen["accepted"] - 1) / span if span > 0 else 0.0
    return {
        "messages": messages, "chats": chats, "margin": margin, "statuses": statuses,
        "accepted": seen["accepted"], "span_s": round(span, 2), "rate_per_s": round(rate, 2),
        "share_of_limit": round(rate / LIMIT, 4),
        "rejected_429": seen["rejected"], "rejected_by": seen["rejected_by"],
        "rejected_at_s": seen["rejected_at"],
        "lost": messages - seen["unique"], "duplicates": seen["duplicates"],
        "out_of_order": seen["out_of_order"], "worker_seconds": round(timing["worker_seconds"], 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--margin", type=float, default=0.0,
                        help="what-if: pace this share under the limits (0.03 = 29.1/s, 1.03 s per chat)")
    args = parser.parse_args(argv)
    results = run(args.messages, args.chats, args.margin)
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
