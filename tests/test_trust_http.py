"""Slow and hostile HTTP clients against a real `warmline run` process on 127.0.0.1.

The server runs with the usual open-file limit of 1024 (as under systemd) and short deadlines
from a county configuration file. Attacks: ~1,100 slow-loris connections (a header line every
half second, reconnecting when dropped) while /healthz is polled; a slow body; POSTs aborted
half-way on /wechat and /telegram; bodies nested thousands deep; an oversized header. Each is
answered (408/400/413/503), /healthz keeps answering, and the log has one line per event and
never a traceback. A burst of 200 connections at once is queued, not dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_DATA_KEY, _drop_postgres_database, _postgres_database
from tests.fakes.telegram_api import FakeBotAPI, free_port

OA_TOKEN = "oa-token"
TG_SECRET = "webhook-secret-for-trust-tests"
HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2
MAX_CONNECTIONS = 300
OPEN_FILES = 1024


class Server:
    """`warmline run` in its own process, with everything it prints collected."""

    def __init__(self, db_url: str, config: Path, api: FakeBotAPI) -> None:
        self.port = free_port()
        env = {**os.environ, "WARMLINE_DATA_KEY": TEST_DATA_KEY, "WARMLINE_CONFIG": str(config),
               "WARMLINE_HTTP_PORT": str(self.port),
               "WARMLINE_WECHAT_APPID": "wx7a3c0f0e1d2b4c5d", "WARMLINE_WECHAT_SECRET": "s",
               "WARMLINE_WECHAT_TOKEN": OA_TOKEN, "WARMLINE_WECHAT_API_BASE": "http://127.0.0.1:9",
               "WARMLINE_TELEGRAM_TOKEN": api.token, "WARMLINE_TELEGRAM_BASE_URL": api.base_url,
               "WARMLINE_TELEGRAM_MODE": "webhook", "WARMLINE_TELEGRAM_WEBHOOK_SECRET": TG_SECRET,
               "WARMLINE_TELEGRAM_WEBHOOK_URL": "https://warmline.example/telegram"}

        def limit_open_files() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))

        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--db", db_url, "run", "--no-scheduler"],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=limit_open_files)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace"))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"not healthy; output:\n{self.output}")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, template_db: Path,
           pg_template: str | None) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("http-limits")
    pg = os.environ.get("WARMLINE_TEST_DATABASE_URL")
    pg_name = None
    if pg and pg_template:
        pg_name, db_url = _postgres_database(pg, pg_template)
    else:
        db_url = f"sqlite:///{home / 'warmline.db'}"
        (home / "warmline.db").write_bytes(template_db.read_bytes())
    config = home / "county.toml"
    config.write_text(f"[http]\nheader_timeout_seconds = {HEADER_TIMEOUT}\nbody_timeout_seconds = {BODY_TIMEOUT}\n"
                      f"max_connections = {MAX_CONNECTIONS}\n")
    api = FakeBotAPI().start()
    running = Server(db_url, config, api)
    try:
        running.wait_healthy()
        yield running
        assert "Traceback" not in running.output, running.output
    finally:
        running.stop()
        api.stop()
        if pg_name and pg:
            _drop_postgres_database(pg, pg_name)


def wechat_query() -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), str(time.time_ns())
    signature = hashlib.sha1("".join(sorted([OA_TOKEN, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": "oTrustTest0000000000000001"}


def wechat_text(content: str) -> bytes:
    return ("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oTrustTest0000000000000001]]>"
            f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{content}</Content><MsgId>{time.time_ns()}</MsgId></xml>").encode()


def log_lines(server: Server, text: str) -> int:
    return sum(text in line for line in server.lines)


async def logged(server: Server, text: str, count: int, within: float = 3.0) -> int:
    """The number of log lines with `text` once it reaches `count` (or `within` seconds pass):
    the server's output reaches the test through a pipe, a moment after its answer."""
    deadline = time.monotonic() + within
    while log_lines(server, text) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return log_lines(server, text)


async def raw_exchange(port: int, head: bytes, wait: float) -> bytes:
    """Send `head`, then only listen for `wait` seconds; what the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    try:
        async with asyncio.timeout(wait):
            return await reader.read()
    except TimeoutError:
        return b""
    finally:
        writer.close()


# ----------------------------------------------------------------------------- attacks


async def test_slow_loris_connections_do_not_starve_healthz(server: Server) -> None:
    # /healthz is polled for POLL seconds, each check allowed CHECK_TIMEOUT (generous: the test
    # machine may be loaded), and every check ends while the attack is still running.
    poll, check_timeout = 10.0, 5.0
    seconds = 1.5 + poll + check_timeout + 1
    attacker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.slowloris", str(server.port), "1100", str(seconds),
        stdout=asyncio.subprocess.PIPE)
    await asyncio.sleep(1.5)  # the attack is under way
    failed: list[str] = []
    latencies: list[float] = []
    checks = 0
    async with httpx.AsyncClient(timeout=check_timeout, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        started = time.monotonic()
        while time.monotonic() - started < poll:
            checks += 1
            t0 = time.monotonic()
            try:
                response = await client.get(server.url("/healthz"))
                latencies.append(time.monotonic() - t0)
                if response.status_code != 200:
                    failed.append(str(response.status_code))
            except httpx.HTTPError as exc:
                failed.append(type(exc).__name__)
            await asyncio.sleep(0.25)
    out, _ = await attacker.communicate()
    report = json.loads(out)
    print(f"slow-loris: {report}; /healthz {checks} checks, slowest {max(latencies, default=0):.3f} s")
    assert report["opened"] >= 1100  # the attack really ran
    assert failed == [], f"/healthz failed {len(failed)} of {checks} times under slow-loris: {failed}"
    dropped = report["answers"].get("closed", 0) + report["answers"].get("HTTP/1.1 408 Request Timeout", 0)
    assert dropped >= 1100  # slow connections are pushed out (cap) or timed out (head deadline)
    async with httpx.AsyncClient(timeout=3) as client:  # and afterwards all is normal again
        assert (await client.get(server.url("/healthz"))).status_code == 200


async def test_a_slow_body_gets_408(server: Server) -> None:
    head = (b"POST /wechat HTTP/1.1\r\nHost: warmline\r\nContent-Type: text/xml\r\nContent-Length: 400\r\n\r\n"
            b"<xml><ToUserName>")
    before = log_lines(server, "request body not received in time")
    answer = await raw_exchange(server.port, head, BODY_TIMEOUT + 3)
    assert answer.startswith(b"HTTP/1.1 408")
    assert await logged(server, "request body not received in time", before + 1) == before + 1


async def test_an_aborted_post_logs_one_line_and_no_traceback(server: Server) -> None:
    query = "&".join(f"{k}={v}" for k, v in wechat_query().items())
    body = wechat_text("我想聊聊，最近睡不好")
    before = log_lines(server, "client disconnected before sending its request body")
    for head in (f"POST /wechat?{query} HTTP/1.1\r\nHost: warmline\r\nContent-Type: text/xml\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:40],
                 f"POST /telegram HTTP/1.1\r\nHost: warmline\r\nContent-Type: application/json\r\n"
                 f"X-Telegram-Bot-Api-Secret-Token: {TG_SECRET}\r\nContent-Length: 300\r\n\r\n".encode()
                 + b'{"update_id": 7, "message": {'):
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head)
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()  # the client goes away half-way through its body
    await asyncio.sleep(1.0)
    assert await logged(server, "client disconnected before sending its request body", before + 2) == before + 2
    assert "Traceback" not in server.output
    assert "我想聊聊" not in server.output  # and no message text in the log


async def test_deeply_nested_bodies_get_400_without_a_traceback(server: Server) -> None:
    depth = 8000
    async with httpx.AsyncClient(timeout=30) as client:
        xml = await client.post(server.url("/wechat"), params=wechat_query(),
                                content=wechat_text("<a>" * depth + "</a>" * depth))
        assert xml.status_code == 400
        nested = "[" * 100_000 + "]" * 100_000
        update = await client.post(server.url("/telegram"), content=nested.encode(),
                                   headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET,
                                            "Content-Type": "application/json"})
        assert update.status_code == 400
        ordinary = await client.post(server.url("/telegram"), content=json.dumps({"update_id": "x"}).encode(),
                                     headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
        assert ordinary.status_code == 400  # the channel's own checks still answer as before
    assert "Traceback" not in server.output


async def test_oversized_headers_and_bodies_are_refused(server: Server) -> None:
    huge = b"GET /healthz HTTP/1.1\r\nHost: warmline\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    assert (await raw_exchange(server.port, huge, 5)).startswith(b"HTTP/1.1 431")
    declared = (f"POST /telegram HTTP/1.1\r\nHost: warmline\r\nX-Telegram-Bot-Api-Secret-Token: {TG_SECRET}\r\n"
                "Content-Length: 2000000\r\n\r\n[[[[").encode()
    assert (await raw_exchange(server.port, declared, 5)).startswith(b"HTTP/1.1 413")  # refused unread
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(server.url("/healthz"))).status_code == 200


async def test_a_burst_of_connections_waits_in_the_queue_instead_of_being_dropped(server: Server) -> None:
    """WeChat and WeCom open one connection per message, so a festival morning arrives as a burst.
    The kernel must queue it for the server to accept; a full queue drops the connection and TCP
    tries again only a second later (then three), most of the platform's five seconds."""
    async def one() -> tuple[float, bytes]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        connected = time.monotonic() - started
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: warmline\r\nConnection: close\r\n\r\n")
            return connected, (await reader.read()).split(b"\r\n", 1)[0]
        finally:
            writer.close()

    server.proc.send_signal(signal.SIGSTOP)  # busy: the burst lands while nothing is accepted
    try:
        burst = [asyncio.create_task(one()) for _ in range(200)]
        await asyncio.sleep(0.5)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    results = await asyncio.gather(*burst)
    assert {status for _, status in results} == {b"HTTP/1.1 200 OK"}
    slowest = max(connected for connected, _ in results)
    assert slowest < 0.9, f"a connection waited {slowest:.2f} s: dropped by a full queue and retried"


def test_settings_reach_the_server(server: Server) -> None:
    """The county file's limits are the ones in force (a 2 s head deadline, not the default 10 s)."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        sock.settimeout(HEADER_TIMEOUT + 3)
        started = time.monotonic()
        answer = sock.recv(100)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < HEADER_TIMEOUT + 2
