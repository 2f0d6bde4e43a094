"""End to end over Telegram: volunteers recording health readings at once, `warmline run` vs PTB.

    python benchmarks/telegram_e2e.py [--volunteers 200] [--readings 3] [--think 0.3] [--no-postgres]
        [--no-sqlite] [--concurrency N] [--step-processes N] [--burn SHARE]

Both bots run as real processes polling the same kind of fake Bot API
(benchmarks/volunteer_crowd.py, in this process): `warmline run --no-scheduler` (its Telegram
channel, runner, outbox fast path and delivery worker, on a SQLite file or PostgreSQL), and the
python-telegram-bot `ConversationHandler` + `PicklePersistence` baseline
(benchmarks/ptb_reading_baseline.py, flushed after every update) on the same database. All
volunteers start at once; each types its next answer `think` seconds after the last message of
the bot's reply. Reported per side: steps per second over the whole run, the first reply's
latency (p50/p99/max), the bot process's CPU seconds (with its helper processes' on PostgreSQL,
`[core] step_processes`), and whether every reading was saved.

Benchmark volunteers type faster than people, so Warmline's per-sender flood guard is raised
out of reach for this run ([core] flood_max_messages in the run's config file); the check still
runs. Nothing else is changed from the defaults.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BENCH_DATA_KEY,
    ROOT,
    PgDatabase,
    fresh_sqlite,
    machine,
    percentile,
    postgres_url,
)
from benchmarks.dialog_throughput import BASELINE_CHAT, WARMLINE_CHAT, prepare
from benchmarks.volunteer_crowd import Crowd, serve

CONCURRENCY: int | None = None  # --concurrency: [core] max_concurrent_steps for this run (default: the shipped one)
STEP_PROCESSES: int | None = None  # --step-processes: [core] step_processes (PostgreSQL; default: the shipped one)
BURN: float = 0.0  # --burn: a process keeps this share of one core busy while each side runs
# The competing process: busy for SHARE of every 10 ms, asleep for the rest (a harsher host).
BURNER = ("import sys, time\nshare = float(sys.argv[1])\nwhile True:\n    t = time.perf_counter()\n"
          "    while time.perf_counter() - t < 0.01 * share:\n        pass\n    time.sleep(0.01 * (1 - share))\n")
RUN_CONFIG = """
[core]
flood_max_messages = 1000000
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """The process's CPU time and its live children's ([core] step_processes helpers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return own + sum(cpu_seconds(int(child)) for child in children if Path(f"/proc/{child}").exists())


def readings_saved(url: str) -> int:
    from sqlalchemy import func, select

    from storage.db import Database
    from storage.models import HealthReading

    db = Database(url)
    with db.session() as s:
        count = int(s.scalar(select(func.count()).select_from(HealthReading)) or 0)
    db.dispose()
    return count


def command(side: str, base_url: str, url: str, workdir: Path) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WARMLINE_DATA_KEY": BENCH_DATA_KEY}
    if side == "warmline":
        config = workdir / "warmline.toml"
        config.write_text(RUN_CONFIG + (f"max_concurrent_steps = {CONCURRENCY}\n" if CONCURRENCY else "")
                          + (f"step_processes = {STEP_PROCESSES}\n" if STEP_PROCESSES else ""))
        env.update({"WARMLINE_TELEGRAM_TOKEN": "7000003:warmline",
                    "WARMLINE_TELEGRAM_BASE_URL": base_url, "WARMLINE_DATABASE_URL": url,
                    "WARMLINE_CONFIG": str(config), "WARMLINE_HTTP_PORT": str(free_port())})
        return [sys.executable, "-m", "bot.cli", "run", "--no-scheduler"], env
    pickle = workdir / f"baseline-{time.monotonic_ns()}.pickle"
    return [sys.executable, str(ROOT / "benchmarks" / "ptb_reading_baseline.py"),
            "--base-url", base_url, "--db", url, "--pickle", str(pickle)], env


async def run_side(side: str, url: str, volunteers: int, readings: int, think: float,
                   workdir: Path, timeout: float) -> dict[str, Any]:
    base = WARMLINE_CHAT if side == "warmline" else BASELINE_CHAT
    crowd = Crowd(think=think, readings=readings)
    crowd.add([base + v for v in range(1, volunteers + 1)])
    port = free_port()
    server, serving = await serve(crowd, port)
    saved_before = readings_saved(url)
    argv, env = command(side, f"http://127.0.0.1:{port}", url, workdir)
    log = (workdir / f"{side}.log").open("w")
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    burner = subprocess.Popen([sys.executable, "-c", BURNER, str(BURN)]) if BURN > 0 else None
    try:
        deadline = time.monotonic() + 60
        while crowd.get_updates_calls == 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{side} did not start polling; see {workdir / (side + '.log')}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        cpu0 = cpu_seconds(proc.pid)
        crowd.begin()
        complete = await crowd.wait_done(timeout)
        wall = (crowd.finished or time.monotonic()) - crowd.started
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        crowd.close()
        server.should_exit = True
        await serving
    lat = sorted(crowd.first_reply)
    steps = crowd.steps()
    return {
        "steps": steps, "wall_s": round(wall, 2), "steps_per_s": round(steps / wall, 1),
        "bot_cpu_s": round(cpu, 2), "steps_per_cpu_s": round(steps / cpu, 1) if cpu else None,
        "first_reply_p50_ms": round(percentile(lat, 50) * 1000, 1),
        "first_reply_p99_ms": round(percentile(lat, 99) * 1000, 1),
        "first_reply_max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "messages_sent": crowd.sends, "get_updates_calls": crowd.get_updates_calls,
        "readings_saved": readings_saved(url) - saved_before,
        "readings_expected": volunteers * readings, "complete": complete,
        "unexpected_texts": crowd.unexpected[:3],
    }


async def run_backend(url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    prepare(url, args.volunteers)
    out: dict[str, Any] = {}
    for side in ("warmline", "baseline"):
        out[side] = await run_side(side, url, args.volunteers, args.readings, args.think,
                                   workdir, args.timeout)
    w, b = out["warmline"], out["baseline"]
    out["ratio_steps_per_s"] = round(w["steps_per_s"] / b["steps_per_s"], 2) if b["steps_per_s"] else None
    out["ratio_first_reply_p50"] = (round(w["first_reply_p50_ms"] / b["first_reply_p50_ms"], 2)
                                    if b["first_reply_p50_ms"] else None)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "volunteers": args.volunteers,
                               "readings_each": args.readings, "think_s": args.think}
    with tempfile.TemporaryDirectory(prefix="wl-tg-e2e-") as tmp:
        workdir = Path(tmp)
        results["sqlite"] = ({"skipped": "--no-sqlite"} if args.no_sqlite
                             else await run_backend(fresh_sqlite(workdir / "e2e.db"), args, workdir))
        server = None if args.no_postgres else (args.pg_url or postgres_url())
        if server is None:
            results["postgresql"] = {"skipped": "--no-postgres" if args.no_postgres
                                     else "no PostgreSQL server reachable"}
        else:
            pg = PgDatabase.create(server)
            try:
                results["postgresql"] = await run_backend(pg.url, args, workdir)
            finally:
                pg.drop()
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, default=200)
    parser.add_argument("--readings", type=int, default=3, help="health readings per volunteer")
    parser.add_argument("--think", type=float, default=0.3, help="seconds before each answer")
    parser.add_argument("--timeout", type=float, default=300, help="give up on a side after this")
    parser.add_argument("--pg-url", help="PostgreSQL server (default: WARMLINE_BENCH_PG_URL, CI's)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--concurrency", type=int, help="[core] max_concurrent_steps for warmline run")
    parser.add_argument("--step-processes", type=int, help="[core] step_processes for warmline run")
    parser.add_argument("--burn", type=float, default=0.0,
                        help="a competing process keeps this share of one core busy during each side (0-1)")
    args = parser.parse_args(argv)
    global CONCURRENCY, STEP_PROCESSES, BURN
    CONCURRENCY = args.concurrency
    STEP_PROCESSES = args.step_processes
    BURN = args.burn
    results = asyncio.run(run(args))
    results["max_concurrent_steps"] = args.concurrency or "default"
    results["step_processes"] = args.step_processes or "default"
    results["burn"] = args.burn
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
