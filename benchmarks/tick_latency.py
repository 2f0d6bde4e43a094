"""The scheduler's tick at province scale, and how fast the web side answers while it runs.

    python benchmarks/tick_latency.py [--households 100000] [--cache DIR] [--modes process,thread,inline]

A real `warmline run` on a copy of the synthetic county (benchmarks/planner_scale.py builds it)
with the WeChat channel configured (its API pointed at a closed port: nothing is sent), the
clock at 08:05 so its first tick writes every volunteer's morning digest. While the tick runs,
a client thread keeps asking, one request at a time, in turn:
- GET /healthz;
- GET /wechat with a signed echostr (WeChat's URL check: the webhook's own handler);
- POST /wechat, a signed text message from a stranger (a dialog step: a database write on the
  web side while the tick writes digests).
Each request's latency is recorded from send to answer; the tick's start and end come from the
process's log ("scheduler started", "tick finished"); the resident memory of `warmline run` and
of its job process is sampled every 50 ms, and their CPU time read from /proc.

Modes, each on its own copy of the county, in the same run:
- process: as built (`[scheduler] jobs_in = "process"`, the default): the jobs in a child process;
- thread: `jobs_in = "thread"`: the jobs in a thread of the web process (the previous design);
- inline: the baseline, the jobs awaited on the web event loop (before either; `job_runner`
  replaced by one that awaits `run_jobs` directly — the only difference);
- idle: `warmline run --no-scheduler`, watched for 20 s: the same requests with no tick at all,
  the floor this machine's load gives the latencies.
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
# the baseline: run the jobs on the web event loop (how it was before JobThread and JobProcess)
INLINE = ("import sys\nimport bot.care.scheduler as s\n"
          "class _Inline:\n    def __init__(self, app):\n        self.app = app\n"
          "    async def run(self, at):\n        return await s.run_jobs(self.app, at)\n"
          "    async def close(self):\n        pass\n"
          "s.job_runner = _Inline\nfrom bot.cli import main\nsys.exit(main(sys.argv[1:]))")
MODES = ("idle", "process", "thread", "inline")
IDLE_WINDOW = 20.0  # seconds the idle mode is watched
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


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


def measure(url: str, *, mode: str, cap: float) -> dict[str, Any]:
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="wl-tick-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [sys.executable, "-c", INLINE, "--verbose", "run"] if mode == "inline" else \
        [sys.executable, "-m", "bot.cli", "--verbose", "run"]
    if mode == "idle":
        cmd.append("--no-scheduler")
    env = _env(url, port)
    if mode == "thread":
        config = Path(log_file.name).with_suffix(".toml")
        config.write_text('[scheduler]\njobs_in = "thread"\n', encoding="utf-8")
        env["WARMLINE_CONFIG"] = str(config)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.DEVNULL, stderr=log_file)
    samples: dict[str, list[tuple[float, float]]] = {"healthz": [], "webhook_get": [], "webhook_post": []}
    stop = threading.Event()
    counter = itertools.count()

    def client() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False) as http:
            while not stop.is_set():
                n = next(counter)
                kind = ("healthz", "webhook_get", "webhook_post")[n % 3]
                # WeChat's timestamps are real time (the channel refuses one 300 s off) and a
                # (timestamp, nonce, signature) is accepted once
                ts, nonce = str(int(time.time())), f"{os.getpid()}-{n}"
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
    peak = peak_jobs = peak_both = 0
    tick_start = tick_end = None
    web_cpu_start = web_cpu_end = jobs_cpu = 0.0
    jobs_pid: int | None = None
    loads = [load_average()]
    try:
        while time.monotonic() - started < cap and proc.poll() is None:
            web = rss_of(proc.pid)
            if mode == "process" and jobs_pid is None:
                jobs_pid = next(iter(children_of(proc.pid)), None)
            jobs = rss_of(jobs_pid) if jobs_pid else 0
            peak, peak_jobs, peak_both = max(peak, web), max(peak_jobs, jobs), max(peak_both, web + jobs)
            if jobs_pid:
                jobs_cpu = max(jobs_cpu, cpu_seconds(jobs_pid))
            if mode == "idle":  # no tick: a fixed window from the first answer
                if tick_start is None and samples["healthz"]:
                    tick_start, web_cpu_start = time.monotonic(), cpu_seconds(proc.pid)
                if tick_start is not None and time.monotonic() - tick_start >= IDLE_WINDOW:
                    tick_end, web_cpu_end = time.monotonic(), cpu_seconds(proc.pid)
                    break
                time.sleep(0.05)
                continue
            text = Path(log_file.name).read_text(errors="replace")
            if tick_start is None and "scheduler started" in text:
                tick_start = time.monotonic()
                web_cpu_start = cpu_seconds(proc.pid)
            if "tick finished" in text:
                tick_end = time.monotonic()
                web_cpu_end = cpu_seconds(proc.pid)
                if jobs_pid:
                    jobs_cpu = max(jobs_cpu, cpu_seconds(jobs_pid))
                break
            time.sleep(0.05)
        loads.append(load_average())
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
        Path(log_file.name).with_suffix(".toml").unlink(missing_ok=True)
    jobs_left = jobs_pid is not None and running(jobs_pid)  # the job process outlived `warmline run`?
    tick_seconds = tick_cpu = None
    for line in log_text.splitlines():
        if "tick finished seconds=" in line:
            tick_seconds = float(line.split("tick finished seconds=")[1].split()[0])
            if " cpu=" in line:
                tick_cpu = float(line.split(" cpu=")[1].split()[0])
    window = (tick_start or started, tick_end or time.monotonic())
    out: dict[str, Any] = {
        "mode": mode, "tick_seconds": tick_seconds, "tick_finished": tick_end is not None,
        # CPU of the process that ran the tick, from its log (the job process: the tick's own)
        "tick_cpu_s": tick_cpu,
        # the web process's CPU while the tick ran (all of the tick's CPU, unless mode == process)
        "web_cpu_s": round(web_cpu_end - web_cpu_start, 2),
        # the job process's CPU from its start (imports ~1 s) to the end of the tick
        "jobs_cpu_s": round(jobs_cpu, 2) if mode == "process" else None,
        "peak_rss_mb": round(peak / MB, 1), "jobs_peak_rss_mb": round(peak_jobs / MB, 1) if mode == "process" else None,
        "both_peak_rss_mb": round(peak_both / MB, 1), "load_average": loads, "job_process_left_behind": jobs_left}
    for kind, values in samples.items():
        # the first answer of each kind is the web process's cold start (imports, caches), in
        # every mode: given apart, not in the percentiles
        first = values[0][1] if values else None
        during = sorted(lat for t0, lat in values[1:] if window[0] <= t0 <= window[1])
        out[kind] = {"first_ms": round(first * 1000, 1) if first is not None else None,
                     "requests": len(during), "p50_ms": round(percentile(during, 50) * 1000, 1),
                     "p99_ms": round(percentile(during, 99) * 1000, 1),
                     "max_ms": round(max(during) * 1000, 1) if during else None}
    reminders = [line for line in log_text.splitlines() if "reminders planned" in line]
    out["reminders"] = reminders[-1].split("reminders planned", 1)[1].strip() if reminders else None
    return out


def run(households: int, cache: Path, modes: tuple[str, ...] = MODES, cap: float = 300.0) -> dict[str, Any]:
    url = county_db(households, cache)
    source = Path(url.removeprefix("sqlite:///"))
    results: dict[str, Any] = {"households": households}
    with tempfile.TemporaryDirectory(prefix="wl-tick-") as tmp:
        for mode in modes:
            target = Path(tmp) / f"{mode}.db"
            shutil.copy(source, target)
            results[mode] = measure(f"sqlite:///{target}", mode=mode, cap=cap)
            print(f"  {mode}: {json.dumps(results[mode], ensure_ascii=False)}", file=sys.stderr)
            target.unlink()
    if "process" in results and "inline" in results and results["inline"]["tick_cpu_s"]:
        results["tick_cpu_ratio_vs_inline"] = round(
            (results["process"]["tick_cpu_s"] or 0) / results["inline"]["tick_cpu_s"], 2)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--cache", default="/tmp/warmline-bench")
    parser.add_argument("--modes", default=",".join(MODES), help=f"which of {','.join(MODES)} to measure, in order")
    parser.add_argument("--no-baseline", action="store_true", help="measure the process mode only")
    parser.add_argument("--cap", type=float, default=300.0, help="stop watching a tick after this many seconds")
    args = parser.parse_args(argv)
    modes = ("process",) if args.no_baseline else tuple(m for m in args.modes.split(",") if m)
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    results = run(args.households, Path(args.cache), modes, args.cap)
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return results


if __name__ == "__main__":
    main()
