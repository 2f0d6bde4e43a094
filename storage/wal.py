"""SQLite's write-ahead log copied back into the database file from a thread of its own.

Why: SQLite checkpoints inside whichever commit crosses `wal_autocheckpoint` (1,000 pages), so
every fiftieth or so dialog step paid for copying the log back and syncing the file — on the
event loop, where every other chat waited for it (a few milliseconds each time; about half of
all commit time, and the longest steps). The bot's own connections therefore never checkpoint
(`PRAGMA wal_autocheckpoint=0`, set in storage.db) and this thread does it a few times a
second instead. A PASSIVE checkpoint takes no lock a writer needs: steps go on meanwhile.
sqlite3 releases the GIL while it works, so the copy runs beside the loop.

Processes that write with the synchronous engine (the CLI, the job process) keep SQLite's own
automatic checkpoints.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from pathlib import Path

log = logging.getLogger("warmline.storage")

INTERVAL_SECONDS = 0.2


class WalCheckpointer:
    """One thread per database file of a running bot; `stop()` ends it (also when the owner is
    garbage-collected, so a forgotten one does not outlive its database)."""

    def __init__(self, path: Path, owner: object, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warmline-wal-checkpoint", daemon=True)
        weakref.finalize(owner, self._stop.set)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self.path, check_same_thread=False)
        except sqlite3.Error as exc:
            log.error("wal checkpoints: cannot open the database error=%s", type(exc).__name__)
            return
        failing = False
        try:
            while not self._stop.wait(self.interval):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    failing = False
                except sqlite3.Error as exc:  # busy with another checkpoint, a disk error: next time
                    if not failing:
                        log.warning("wal checkpoint failed error=%s", type(exc).__name__)
                    failing = True
        finally:
            connection.close()
