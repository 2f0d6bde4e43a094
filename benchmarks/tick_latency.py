"""The scheduler's tick at province scale, and how fast the web side answers while it runs.

    python benchmarks/tick_latency.py [--households 100000] [--cache DIR] [--no-baseline]

A real `warmline run` on a copy of the synthetic county (benchmarks/planner_scale.py builds it)
with the WeChat channel configured (its API pointed at a closed port: nothing is sent), the
clock at 08:05 so its first tick writes every volunteer's morning digest. While the tick runs,
a client thread keeps asking, one request at a time, in turn:
- GET /healthz;
- GET /wechat with a signed echostr (WeChat's URL check: the webhook's own handler);
- POST /wechat, a signed text message from a stranger (a dialog step: a database write on the
  web side while the tick writes digests).
Each request's latency is recorded from send to answer; the tick's start and end come from the
process's log ("scheduler started", "tick finished"), its peak RSS is sampled every 50 ms.

Baseline, in the same run: the same process with the jobs run on the web event loop, as before
(`JobThread.run` replaced by a direct await — the only difference).
"""

from __future__ import annotations

import argparse
import hashlib
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

from benchmarks.common import BENCH_DATA_KEY, percentile, rss_of
from benchmarks.delivery_rate import free_port
from benchmarks.planner_scale import county_db

TICK_AT = "2026-11-20T08:05:00+08:00"
TOKEN = "bench-token"
MB = 2**20
# the baseline: run the jobs on the web event loop (how it was before JobThread)
INLINE = ("import sys\nimport bot.care.scheduler as s\n"
          "async def _inline(self, at):\n    return await s.run_jobs(self.app, at)\n"
          "s.JobThread.run = _inline\nfrom bot.cli import main\nsys.exit(main(sys.argv[1:]))")


def _sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _env(url: str, port: int) -> dict[str, str]:
    return {**os.environ, "WARMLINE_DATABASE_URL": url, "WARMLINE_DATA_KEY": BENCH_DATA_KEY,
            "WARMLINE_HTTP_PORT": str(port), "WARMLINE_NOW": TICK_AT, "WARMLINE_TELEGRAM_TOKEN": "",
            "WARMLINE_CONFIG": "", "WARMLINE_WECHAT_APPID": "wxbench0000000000", "WARMLINE_WECHAT_SECRET": "s",
            "WARMLINE_WECHAT_TOKEN": TOKEN, "WARMLINE_WECHAT_API_BASE": "http://127.0.0.1:9"}


def _text_xml(openid: str, n: int) -> str:
    return (f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
            f"</FromUserName><CreateTime>{1795000000 + n}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[你好]]></Content><MsgId>{9000000 + n}</MsgId></xml>")


def measure(url: str, *, inline: bool, cap: float) -> dict[str, Any]:
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="wl-tick-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [sys.executable, "-c", INLINE, "--verbose", "run"] if inline else \
        [sys.executable, "-m", "bot.cli", "--verbose", "run"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=_env(url, port), cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.DEVNULL, stderr=log_file)
    samples: dict[str, list[tuple[float, float]]] = {"healthz": [], "webhook_get": [], "webhook_post": []}
    stop = threading.Event()
    counter = itertools.count()

    def client() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False) as http:
            while not stop.is_set():
                n = next(counter)
                kind = ("healthz", "webhook_get", "webhook_post")[n % 3]
                ts, nonce = str(1795000000 + n), str(n)
                t0 = time.monotonic()
                try:
                    if kind == "healthz":
                        http.get("/healthz").raise_for_status()
                    elif kind == "webhook_get":
                        r = http.get("/wechat", params={"signature": _sign(TOKEN, ts, nonce), "timestamp": ts,
                                                        "nonce": nonce, "echostr": str(n)})
                        r.raise_for_status()
                    else:
                        http.post("/wechat", params={"signature": _sign(TOKEN, ts, nonce), "timestamp": ts,
                                                     "nonce": nonce, "openid": "o"},
                                  content=_text_xml(f"oBenchStranger{n % 50:04d}", n).encode()).raise_for_status()
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                samples[kind].append((t0, time.monotonic() - t0))
                time.sleep(0.02)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    peak = 0
    tick_start = tick_end = None
    try:
        while time.monotonic() - started < cap and proc.poll() is None:
            peak = max(peak, rss_of(proc.pid))
            text = Path(log_file.name).read_text(errors="replace")
            if tick_start is None and "scheduler started" in text:
                tick_start = time.monotonic()
            if "tick finished" in text:
                tick_end = time.monotonic()
                break
            time.sleep(0.05)
        time.sleep(1.0)  # a second of the idle process, for comparison
    finally:
        stop.set()
        thread.join(35)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_text = Path(log_file.name).read_text(errors="replace")
        Path(log_file.name).unlink()
    tick_seconds = None
    for line in log_text.splitlines():
        if "tick finished seconds=" in line:
            tick_seconds = float(line.split("tick finished seconds=")[1].split()[0])
    window = (tick_start or started, tick_end or time.monotonic())
    out: dict[str, Any] = {"inline": inline, "tick_seconds": tick_seconds, "tick_finished": tick_end is not None,
                           "peak_rss_mb": round(peak / MB, 1)}
    for kind, values in samples.items():
        during = sorted(lat for t0, lat in values if window[0] <= t0 <= window[1])
        out[kind] = {"requests": len(during), "p50_ms": round(percentile(during, 50) * 1000, 1),
                     "p99_ms": round(percentile(during, 99) * 1000, 1),
                     "max_ms": round(max(during) * 1000, 1) if during else None}
    reminders = [line for line in log_text.splitlines() if "reminders planned" in line]
    out["reminders"] = reminders[-1].split("reminders planned", 1)[1].strip() if reminders else None
    return out


def run(households: int, cache: Path, baseline: bool = True, cap: float = 300.0) -> dict[str, Any]:
    url = county_db(households, cache)
    source = Path(url.removeprefix("sqlite:///"))
    results: dict[str, Any] = {"households": households}
    with tempfile.TemporaryDirectory(prefix="wl-tick-") as tmp:
        for name, inline in (("thread", False), *((("inline", True),) if baseline else ())):
            target = Path(tmp) / f"{name}.db"
            shutil.copy(source, target)
            results[name] = measure(f"sqlite:///{target}", inline=inline, cap=cap)
            print(f"  {name}: {json.dumps(results[name], ensure_ascii=False)}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--cache", default="/tmp/warmline-bench")
    parser.add_argument("--no-baseline", action="store_true", help="skip the jobs-on-the-loop baseline")
    parser.add_argument("--cap", type=float, default=300.0, help="stop watching a tick after this many seconds")
    args = parser.parse_args(argv)
    results = run(args.households, Path(args.cache), not args.no_baseline, args.cap)
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
