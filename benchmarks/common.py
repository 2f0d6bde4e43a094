"""What every benchmark shares: the machine's description, fresh databases, percentiles, a clock.

Benchmarks print numbers; they are not tests and nothing in tests/ depends on them.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI)
BENCH_DATA_KEY = "YmVuY2htYXJrLW9ubHkta2V5LWZvci13YXJtbGluZSE="  # fictional, benchmarks only
PG_DEFAULT = "postgresql://warmline@127.0.0.1:54329/warmline"  # what .ci/start-postgres prints


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loop_reference() -> float:
    """CPU seconds for ten million `x += i` in pure Python: a yardstick for this core's speed."""
    start = time.process_time()
    x = 0
    for i in range(10_000_000):
        x += i
    return time.process_time() - start


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "load_average": os.getloadavg(),
        "loop_10m_cpu_s": round(loop_reference(), 2),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def fresh_sqlite(path: Path) -> str:
    """A new migrated SQLite file (any old one and its WAL removed)."""
    from storage.migrate import upgrade

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


def postgres_url() -> str | None:
    """The benchmark PostgreSQL server if one answers (WARMLINE_BENCH_PG_URL, else the CI one)."""
    url = os.environ.get("WARMLINE_BENCH_PG_URL") or PG_DEFAULT
    try:
        engine = sqlalchemy.create_engine(sqlalchemy.make_url(url).set(drivername="postgresql+psycopg"),
                                          connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception:
        return None
    return url


@dataclass
class PgDatabase:
    """A throwaway migrated database on the PostgreSQL server; `drop()` when done."""

    admin_url: str
    name: str
    url: str

    @classmethod
    def create(cls, server_url: str) -> PgDatabase:
        from storage.migrate import upgrade

        name = f"wl_bench_{uuid.uuid4().hex[:8]}"
        admin = sqlalchemy.create_engine(sqlalchemy.make_url(server_url).set(drivername="postgresql+psycopg"),
                                         isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = sqlalchemy.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        return cls(server_url, name, url)

    def drop(self) -> None:
        admin = sqlalchemy.create_engine(sqlalchemy.make_url(self.admin_url).set(drivername="postgresql+psycopg"),
                                         isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()


class MovingClock:
    """Starts at `START` and moves with real time, so timestamps change from step to step."""

    def __init__(self, at: datetime = START) -> None:
        # the system clock's reading plus a fixed offset: as cheap as the service's own clock
        # (domain.services.SystemClock), which the runner asks several times a step
        self._offset = at.astimezone(UTC) - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM), in MB.

    Why not `ru_maxrss`: on Linux it survives fork and exec, so a fresh measuring process
    started by a big parent reports the parent's peak. VmHWM belongs to the process image."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_of(pid: int) -> int:
    """Resident memory of a process in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=False).stdout.strip() or "?"
    except OSError:
        return "?"


def baseline_worktree(revision: str, cache: Path, name: str) -> Path:
    """The code of an earlier revision, checked out once as a detached git worktree under
    `cache`, for benchmarks that run the old and the new code side by side in one run."""
    tree = cache / f"{name}-baseline-{revision}"
    if not (tree / "bot").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=ROOT, check=True,
                       capture_output=True)
    return tree
