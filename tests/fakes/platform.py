"""A generic fake messaging platform on 127.0.0.1: counts every message it accepts, and misbehaves
on request (5xx, 429 with retry_after, quota errors, hangs, blocked recipients).

It runs a real HTTP server in a thread, so in-process workers and worker subprocesses alike talk
to it over a socket; tests count deliveries here, as a platform would see them.

API: `POST /send` with JSON {"chat": address, "text": ..., "ref": outbox id, "by": sender pid}
  200 {"ok": true, "message_id": n}                     accepted (counted)
  200 {"ok": false, "errcode": 45009, "retry_after": s}  quota exhausted (WeChat style)
  429 {"ok": false, "parameters": {"retry_after": s}}    flood control (Telegram style)
  403 {"ok": false, "description": "blocked"}           the recipient blocked the bot
  5xx                                                   platform trouble
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a burst of concurrent sends must not overflow the listen backlog
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that died mid-request (a killed worker) is expected here, not an error."""



@dataclass
class Fault:
    status: int = 503
    retry_after: float | None = None
    quota: bool = False
    hang: float = 0.0  # seconds to wait before answering (longer than the client timeout = timeout)


@dataclass(frozen=True)
class Received:
    chat: str
    text: str
    ref: int | None
    at: float
    by: int | None = None  # the sending process id, so a test can tell workers apart


class FakePlatform:
    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay  # every accepted message takes this long (a real API's latency)
        self.received: list[Received] = []
        self.requests = 0
        self.blocked: set[str] = set()
        # called (in the server's thread) with the running count after each accepted message
        self.on_message: Callable[[int], None] | None = None
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakePlatform:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, count: int = 1, **fault: Any) -> None:
        """The next `count` requests get this fault instead of being accepted."""
        with self._lock:
            self._faults.extend(Fault(**fault) for _ in range(count))

    # ----------------------------------------------------------- what arrived

    def chats(self) -> Counter[str]:
        with self._lock:
            return Counter(r.chat for r in self.received)

    def refs(self) -> Counter[int | None]:
        with self._lock:
            return Counter(r.ref for r in self.received)

    def texts_to(self, chat: str) -> list[str]:
        with self._lock:
            return [r.text for r in self.received if r.chat == chat]

    def senders(self) -> Counter[int | None]:
        with self._lock:
            return Counter(r.by for r in self.received)

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.count()} of {count} messages arrived")
            time.sleep(0.01)

    # ---------------------------------------------------------------- serving

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            if fault.hang:
                time.sleep(fault.hang)
            if fault.quota:
                return 200, {"ok": False, "errcode": 45009, "errmsg": "api freq out of limit",
                             "retry_after": fault.retry_after}
            if fault.status == 429:
                return 429, {"ok": False, "error_code": 429,
                             "parameters": {"retry_after": fault.retry_after or 1}}
            return fault.status, {"ok": False, "description": "fake platform fault"}
        chat = str(body.get("chat", ""))
        if chat in self.blocked:
            return 403, {"ok": False, "description": "Forbidden: bot was blocked by the user"}
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.received.append(Received(chat, str(body.get("text", "")), body.get("ref"),
                                          time.monotonic(), body.get("by")))
            message_id = len(self.received)
        if self.on_message is not None:
            self.on_message(message_id)
        return 200, {"ok": True, "message_id": message_id}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if len(raw) == length else None
                except ValueError:
                    body = None
                if isinstance(body, dict) and body.get("chat"):
                    status, answer = platform._answer(body)
                else:  # a truncated request (its sender was killed mid-write) is not a message
                    status, answer = 400, {"ok": False, "description": "bad request"}
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        return Handler
