"""Memory: resident size of a real `warmline run` process over a 100k-household county.

    python benchmarks/memory.py [--households 100000] [--cache DIR]

Three real processes on a copy of the synthetic county (benchmarks/planner_scale.py builds it):
- `warmline run --no-scheduler`, idle: RSS a few seconds after /healthz answers;
- `warmline run` with the scheduler: its first tick plans every job at 08:05 local time (the
  volunteers' morning digests over every household); peak RSS sampled every 50 ms until the
  process has been idle for 3 s;
- `warmline schedule --at …`: one tick in its own process; peak RSS from the kernel (VmHWM).
No channel is configured, so nothing is sent; the delivery worker runs and finds nothing to send.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH_DATA_KEY, rss_of
from benchmarks.delivery_rate import free_port
from benchmarks.planner_scale import county_db

TICK_AT = "2026-11-20T08:05:00+08:00"
MB = 2**20


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _env(url: str, port: int) -> dict[str, str]:
    return {**os.environ, "WARMLINE_DATABASE_URL": url, "WARMLINE_DATA_KEY": BENCH_DATA_KEY,
            "WARMLINE_HTTP_PORT": str(port), "WARMLINE_NOW": TICK_AT,
            "WARMLINE_TELEGRAM_TOKEN": "", "WARMLINE_CONFIG": ""}


def _copy(url: str, workdir: Path, name: str) -> str:
    source = Path(url.removeprefix("sqlite:///"))
    target = workdir / name
    shutil.copy(source, target)
    return f"sqlite:///{target}"


def _spawn(url: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    # never a pipe nobody reads (a full pipe would stall the process); closed with the process
    log = tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", *extra], env=_env(url, port),
                            cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.DEVNULL, stderr=log)
    return proc, port


def _healthy(port: int, timeout: float = 1.0) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=timeout).raise_for_status()
        return True
    except httpx.HTTPError:
        return False


def _start(url: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    proc, port = _spawn(url, *extra)
    deadline = time.monotonic() + 60
    while not _healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("warmline run did not start")
        time.sleep(0.1)
    return proc, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def idle(url: str) -> dict[str, Any]:
    proc, _ = _start(url, "--no-scheduler")
    try:
        time.sleep(5)
        samples = []
        for _ in range(20):
            samples.append(rss_of(proc.pid))
            time.sleep(0.1)
        return {"rss_mb": round(max(samples) / MB, 1)}
    finally:
        _stop(proc)


def planning(url: str, cap: float = 400.0) -> dict[str, Any]:
    """Peak RSS through the first scheduler tick, and how long /healthz went unanswered."""
    started = time.monotonic()
    proc, port = _spawn(url)
    peak, last_ticks, quiet_since = 0, -1, None
    answered: list[float] = []
    stop_probe = threading.Event()

    def probe() -> None:  # the HTTP app shares the event loop with the scheduler
        while not stop_probe.is_set():
            if _healthy(port, timeout=0.5):
                answered.append(time.monotonic())
            time.sleep(0.25)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        while time.monotonic() - started < cap and proc.poll() is None:
            peak = max(peak, rss_of(proc.pid))
            ticks = _cpu_ticks(proc.pid)
            now = time.monotonic()
            if ticks - last_ticks > 2:  # busy (more than 20 ms of CPU since the last look)
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= 3.0 and now - started > 5.0:
                break
            last_ticks = ticks
            time.sleep(0.05)
        settled = rss_of(proc.pid)
        finished = quiet_since is not None and time.monotonic() - quiet_since >= 3.0
    finally:
        stop_probe.set()
        prober.join(5)
        _stop(proc)
    first = answered[0] - started if answered else None
    gaps = [b - a for a, b in itertools.pairwise(answered)]
    return {"peak_rss_mb": round(peak / MB, 1), "rss_after_tick_mb": round(settled / MB, 1),
            "tick_seconds": round((quiet_since or time.monotonic()) - started, 1), "tick_finished": finished,
            "healthz_first_answer_s": round(first, 1) if first is not None else None,
            "healthz_longest_gap_s": round(max(gaps), 1) if gaps else None}


def schedule(url: str) -> dict[str, Any]:
    wrapper = ("import resource, sys\nfrom bot.cli import main\ncode = main(sys.argv[1:])\n"
               "from benchmarks.common import peak_rss_mb\nprint('MAXRSS_KB', int(peak_rss_mb() * 1024))\nsys.exit(code)")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", wrapper, "schedule", "--at", TICK_AT],
                          env=_env(url, free_port()), cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    lines = proc.stdout.strip().splitlines()
    peak = next((int(x.split()[1]) for x in lines if x.startswith("MAXRSS_KB")), 0)
    return {"peak_rss_mb": round(peak / 1024, 1), "seconds": round(seconds, 1), "exit": proc.returncode,
            "output": [x for x in lines if not x.startswith("MAXRSS_KB")][:8]}


def run(households: int, cache: Path, with_schedule: bool = True, cap: float = 400.0) -> dict[str, Any]:
    url = county_db(households, cache)
    with tempfile.TemporaryDirectory(prefix="wl-memory-") as tmp:
        workdir = Path(tmp)
        out = {"households": households,
               "idle": idle(_copy(url, workdir, "idle.db")),
               "planning_run": planning(_copy(url, workdir, "run.db"), cap)}
        if with_schedule:
            out["schedule_command"] = schedule(_copy(url, workdir, "schedule.db"))
        return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--cache", default="/tmp/warmline-bench")
    parser.add_argument("--no-schedule", action="store_true", help="skip the `warmline schedule` process")
    parser.add_argument("--tick-cap", type=float, default=400.0,
                        help="stop watching the scheduler tick after this many seconds")
    args = parser.parse_args(argv)
    results = run(args.households, Path(args.cache), not args.no_schedule, args.tick_cap)
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
