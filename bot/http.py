"""The one HTTP app (ASGI, Starlette): webhooks of every channel and a health check, with limits.

Meant to sit behind a TLS reverse proxy; it listens on WARMLINE_HTTP_HOST:WARMLINE_HTTP_PORT
(default 127.0.0.1:8080). The proxy should enforce the same limits (README, SECURITY.md), but
the app does not rely on it: a client that is slow, hostile or simply gone must not cost more
than one connection slot for a few seconds, and must never produce a stack trace in the log.

- Headers: a connection that has not sent a complete request head within
  `[http] header_timeout_seconds` (from connecting, or from the first byte of a following
  request on a kept-alive connection) gets 408 and is closed.
- Connections: at most `[http] max_connections` are open. A new one over the cap evicts the
  oldest connection that is still waiting for its headers (a slow-loris cannot starve
  `/healthz` or a webhook: a real client sends its request at once); with none to evict it
  gets 503. uvicorn's `limit_concurrency` caps requests in flight beyond that.
- Bursts: the kernel queues up to `[http] listen_backlog` connections not yet accepted. WeChat
  and WeCom open a connection per message; a burst of 1,000 into a queue of 128 had most of its
  connections dropped by the kernel and retried by TCP 1 s and 3 s later — most of the
  platform's 5 seconds. The event loop still accepts at most `ACCEPT_BATCH` (and a third of the
  cap) in one go: a bigger batch, over the cap, would push out connections accepted a moment
  before whose request has not been read yet. Open files stay near max_connections +
  listen_backlog (plus connections being closed): keep max_connections + 2 x listen_backlog
  + 200 under `ulimit -n` (`warmline run` raises its limit to that where it can).
- Bodies: read in full before any route sees them, within `[http] body_timeout_seconds` (408)
  and `[http] max_body_bytes` (413). A client that disconnects meanwhile costs one log line.
- Heads: larger than `[http] max_header_bytes` get 431; h11 cuts off a head still incomplete at
  four times that (400).
- A body nested deeper than the parsers can follow (RecursionError) is answered 400.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import h11
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

log = logging.getLogger("warmline.http")


@dataclass(frozen=True)
class HttpLimits:
    """The HTTP limits, from `[http]` (bot/defaults/http.toml)."""

    header_timeout: float = 10.0
    body_timeout: float = 20.0
    max_body_bytes: int = 1_048_576
    max_connections: int = 2000
    keep_alive: float = 5.0
    max_header_bytes: int = 16_384
    backlog: int = 1024

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> HttpLimits:
        d = cls()
        return cls(header_timeout=float(section.get("header_timeout_seconds", d.header_timeout)),
                   body_timeout=float(section.get("body_timeout_seconds", d.body_timeout)),
                   max_body_bytes=int(section.get("max_body_bytes", d.max_body_bytes)),
                   max_connections=int(section.get("max_connections", d.max_connections)),
                   keep_alive=float(section.get("keep_alive_seconds", d.keep_alive)),
                   max_header_bytes=int(section.get("max_header_bytes", d.max_header_bytes)),
                   backlog=int(section.get("listen_backlog", d.backlog)))


OPEN_FILES_SPARE = 200  # database files, the platforms' API connections, logs


def fit_open_files(limits: HttpLimits) -> HttpLimits:
    """Raise this process's open-file limit (up to its hard limit) to hold the connection cap and
    the listen backlog; where it cannot, shorten the backlog (to a quarter of what is there at
    most), then lower the cap to what fits, so a festival morning meets 503s, not a storm of
    "too many open files". (A service manager's default is often 1,024.)"""
    try:
        import resource
    except ImportError:  # not on this platform: leave it to the operator
        return limits
    need = limits.max_connections + 2 * limits.backlog + OPEN_FILES_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(hard, need)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return limits
    room = int(soft) - OPEN_FILES_SPARE
    backlog = max(16, min(limits.backlog, room // 4))
    cap = max(16, min(limits.max_connections, room - 2 * backlog))
    if cap < limits.max_connections:
        log.warning("open-file limit %d holds only %d connections ([http] max_connections = %d); "
                    "raise LimitNOFILE / ulimit -n", soft, cap, limits.max_connections)
    else:
        log.info("open-file limit %d: listen backlog shortened to %d", soft, backlog)
    return replace(limits, max_connections=cap, backlog=backlog)


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _too_deep(request: Request, _exc: Exception) -> Response:
    log.warning("request body nested too deeply path=%s", request.url.path)
    return PlainTextResponse("malformed request", status_code=400)


def build_http_app(routes: Sequence[BaseRoute], limits: HttpLimits | None = None) -> ASGIApp:
    app = Starlette(routes=[Route("/healthz", healthz), *routes],
                    exception_handlers={RecursionError: _too_deep})
    return BodyGuard(app, limits or HttpLimits())


# ---------------------------------------------------------------------------- bodies


async def _plain(send: Send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": text.encode()})


ARRIVED = "warmline.arrived"  # scope key: time.monotonic() when the request arrived


def arrived_at(scope: Scope) -> float:
    """When the request arrived (BodyGuard's stamp), or now for an app run without the guard."""
    stamp = scope.get(ARRIVED)
    return float(stamp) if stamp is not None else time.monotonic()


class BodyGuard:
    """Reads each request body in full, within the time and size limits, before the routes see it.

    Why here and not in each channel: every route then gets a body that is already complete, so
    no handler can wait on a slow client or meet a disconnect half-way (which Starlette raises
    as an exception, logged by uvicorn with its traceback). Webhook bodies are small.
    """

    def __init__(self, app: ASGIApp, limits: HttpLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # when the request began: its connection's accept (or the first byte of a following
        # request on a kept-alive one), stamped by the protocol below; else now, the head being
        # in. A webhook's reply budget counts from here, not from when its body had been read
        # (a slow body must not lengthen the platform's 5 seconds), and a busy loop's turns
        # between the accept and this line count too.
        scope.setdefault(ARRIVED, time.monotonic())
        path = scope.get("path", "")
        headers = scope.get("headers") or []
        head_size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + sum(
            len(name) + len(value) + 4 for name, value in headers)
        if head_size > self.limits.max_header_bytes:  # h11 only limits a head still incomplete
            log.warning("request refused: headers too large path=%s", path)
            await _plain(send, 431, "request headers too large")
            return
        declared = dict(headers).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limits.max_body_bytes):
            log.warning("request body refused: too large path=%s", path)
            await _plain(send, 413, "request too large")
            return
        body = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        more = True
        while more:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                log.warning("request body not received in time path=%s seconds=%s", path,
                            self.limits.body_timeout)
                await _plain(send, 408, "request timeout")
                return
            if message["type"] == "http.disconnect":
                log.warning("client disconnected before sending its request body path=%s", path)
                return
            body += message.get("body", b"")
            if len(body) > self.limits.max_body_bytes:
                log.warning("request body refused: too large path=%s", path)
                await _plain(send, 413, "request too large")
                return
            more = bool(message.get("more_body", False))
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # only a disconnect can come now

    return replay


# ---------------------------------------------------------------------- connections

REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 15\r\n"
                   b"connection: close\r\n\r\nrequest timeout")
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n"
        b"connection: close\r\n\r\nbusy")


EVICT_GRACE = 1.0  # seconds a new connection is evicted last, while its bytes may be unread


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for request heads and a connection cap."""

    limits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = 0.0
        self._bytes_in_head = 0

    def waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE

    def unread(self, now: float) -> bool:
        """Accepted a moment ago and none of its bytes read yet: evicted last among those waiting.

        Its request may well be complete in the socket buffer (a burst of accepts comes before
        the reads), so pushing it out could cut a genuine client where a slow one, already seen
        sending part of a head, or an old one, is there to go."""
        return self._bytes_in_head == 0 and now - self._head_started <= EVICT_GRACE

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            now = time.monotonic()
            idle = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and c.waiting_for_head()]
            if idle:
                min(idle, key=lambda c: (c.unread(now), c._head_started)).drop(b"", "evicted (connection cap)")
            else:
                log.warning("connection refused: %d connections busy", len(self.connections))
                transport.write(BUSY)
                transport.close()
                return
        super().connection_made(transport)
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.waiting_for_head():
            if self._head_timer is None:  # the first byte of a following request: a new deadline
                self._start_head_timer()
            self._bytes_in_head += len(data)
        super().data_received(data)
        cycle = getattr(self, "cycle", None)
        if cycle is not None and ARRIVED not in cycle.scope:  # a request begun by these bytes
            cycle.scope[ARRIVED] = self._head_started
        if not self.waiting_for_head():
            self._cancel_head_timer()
            self._bytes_in_head = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self.transport is None:  # refused in connection_made
            return
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_started = time.monotonic()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.waiting_for_head():
            # a silent connection is just closed; a started request is told why
            self.drop(REQUEST_TIMEOUT if self._bytes_in_head else b"", "request head not received in time")

    def drop(self, answer: bytes, why: str) -> None:
        log.info("connection closed: %s", why)
        self._cancel_head_timer()
        if self.transport is not None and not self.transport.is_closing():
            if answer:
                self.transport.write(answer)
            self.transport.close()
        self.connections.discard(self)


def protocol_for(limits: HttpLimits) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, carrying these limits."""
    return type("WarmlineH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def uvicorn_options(limits: HttpLimits) -> dict[str, Any]:
    """What `warmline run` passes to uvicorn.Config besides the app, host and port."""
    return {"http": protocol_for(limits), "limit_concurrency": limits.max_connections + 1,
            "timeout_keep_alive": limits.keep_alive,
            # a complete head over max_header_bytes gets the app's 431; h11 cuts off only a head
            # still incomplete at four times that (else a head split across reads got 400 or a reset)
            "h11_max_incomplete_event_size": 4 * limits.max_header_bytes,
            "backlog": accept_batch(limits)}


ACCEPT_BATCH = 128


def accept_batch(limits: HttpLimits) -> int:
    """How many queued connections the event loop accepts in one go (asyncio uses the backlog
    it is given for both): small beside the cap, so a batch never evicts its own members."""
    return max(1, min(ACCEPT_BATCH, limits.backlog, limits.max_connections // 3))


class BurstSocket(socket.socket):
    """A listening socket whose kernel queue stays `queue` deep whatever backlog asyncio asks for
    when it starts serving (it calls listen() again with its accept batch)."""

    queue = 128

    def listen(self, backlog: int = 128) -> None:
        super().listen(max(backlog, self.queue))


def burst_socket(sock: socket.socket, limits: HttpLimits) -> socket.socket:
    """`sock`, bound and listening, as a BurstSocket holding `[http] listen_backlog` waiting
    connections; the original object is detached (its file descriptor lives on in the new one)."""
    queued = BurstSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    queued.queue = max(1, limits.backlog)
    queued.listen(queued.queue)
    queued.setblocking(False)
    return queued
