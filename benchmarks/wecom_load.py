"""WeCom on a busy morning: N volunteers at once record health readings through `warmline run`.

    python benchmarks/wecom_load.py [--volunteers 50 200 1000] [--think 0.3] [--baseline]

`warmline run` is started as its own process on a fresh SQLite file holding a synthetic county
(8 households per volunteer), with WeCom configured with the published test keys (corp id
wx5823bf96d3bd56c7, token QDG6eK, EncodingAESKey jWmYm7…) and its API base pointed at a fake WeCom
API served by this process. This process then plays the platform for N volunteers at once, each
walking the health-reading dialog (健康 → household → kind → 135/85 → advice → save) with 0.3 s
of thought after each reply, and behaves like WeCom: every try of a message is freshly signed
and encrypted, the platform hangs up after 5 s and posts the same message again (MsgId kept),
up to 3 more times; an answer of `success` means the reply will come through message/send.

Reported per N: dialogs completed, replies lost (a step whose reply never came, passively or
through the API, within 300 s), replies slower than 60 s, duplicate replies, POSTs answered after 5 s (hung up on), p50/p99
of the HTTP answer time and of the time from a message to its reply, the share of steps answered
passively, and the server's CPU seconds. `--baseline` also runs each N with admission control
off (every step admitted at once, `[core] max_concurrent_steps` = 100000): the same process, the same
load, for a ratio. `WECOM_LOAD_EXTRA` (environment) is appended to the server's configuration
file after `[wecom] link_by_mobile = false`, e.g. `reply_budget_seconds = 3.0` to try a setting.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH_DATA_KEY, START, fresh_sqlite, machine, percentile

CORP_ID, TOKEN, AES_KEY, AGENT_ID = "wx5823bf96d3bd56c7", "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", 218
SCRIPT = ("健康", "1", "1", "135/85", "无", "保存")
HANG_UP = 5.0
RETRIES = 3
REPLY_WAIT = 300.0  # a reply not come by then is lost; one slower than SLOW is counted apart
SLOW = 60.0
_msg_ids = itertools.count(7_000_000_000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------- the fake WeCom API

class FakeWeComAPI:
    """gettoken and message/send over a minimal keep-alive HTTP/1.1 server on this event loop."""

    def __init__(self) -> None:
        self.inbox: dict[str, asyncio.Queue[str]] = defaultdict(asyncio.Queue)
        self.sends = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                target = lines[0].split(" ")[1]
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                answer = self._answer(urlsplit(target).path.rsplit("/cgi-bin/", 1)[-1], body)
                data = json.dumps(answer).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(data)).encode() + b"\r\n\r\n" + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _answer(self, endpoint: str, body: bytes) -> dict[str, Any]:
        if endpoint == "gettoken":
            return {"errcode": 0, "access_token": "BENCH-TOKEN", "expires_in": 7200}
        if endpoint == "message/send":
            message = json.loads(body)
            self.sends += 1
            self.inbox[message["touser"]].put_nowait(message.get("text", {}).get("content", ""))
            return {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": f"m{self.sends}"}
        return {"errcode": 60111, "errmsg": "userid not found"}


# ---------------------------------------------------------------------------- the platform's side

@dataclass
class Tally:
    tries: int = 0
    hung_up: int = 0
    answer_times: list[float] = field(default_factory=list)
    reply_times: list[float] = field(default_factory=list)
    passive: int = 0
    via_api: int = 0
    lost: int = 0
    refused: int = 0
    completed: int = 0
    duplicates: int = 0
    connect_times: list[float] = field(default_factory=list)
    api_waits: list[float] = field(default_factory=list)  # from `success` to the reply by the API
    hung_connecting: int = 0  # hung up before the connection was even accepted


class Platform:
    def __init__(self, port: int, api: FakeWeComAPI, think: float) -> None:
        from wechatpy.enterprise import WeChatCrypto

        self.port = port
        self.api = api
        self.think = think
        self.crypto = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)
        self.tally = Tally()

    def _seal(self, xml: str) -> tuple[str, bytes]:
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        sealed = self.crypto.encrypt_message(xml, nonce, timestamp)
        encrypt = sealed.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
        signature = sealed.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
        body = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
                f"<AgentID><![CDATA[{AGENT_ID}]]></AgentID></xml>").encode()
        query = urlencode({"msg_signature": signature, "timestamp": timestamp, "nonce": nonce})
        return query, body

    async def _post(self, query: str, body: bytes) -> tuple[int, bytes] | None:
        """One try: the answer, or None when the platform hung up after 5 s."""
        began = time.monotonic()
        connected: list[float] = []

        async def exchange() -> tuple[int, bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            connected.append(time.monotonic() - began)
            self.tally.connect_times.append(connected[0])
            try:
                writer.write(f"POST /wecom?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)
                data = await (reader.readexactly(length) if length is not None else reader.read())
                return status, data
            finally:
                writer.close()

        try:
            return await asyncio.wait_for(exchange(), HANG_UP)
        except TimeoutError:
            if not connected:
                self.tally.hung_connecting += 1
            return None
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            return (0, b"")

    def _open(self, data: bytes) -> str:
        text = data.decode()
        signature = text.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
        stamp = text.split("<TimeStamp>")[1].split("</TimeStamp>")[0]
        nonce = text.split("<Nonce><![CDATA[")[1].split("]]>")[0]
        plain = self.crypto.decrypt_message(text, signature, stamp, nonce)
        return plain.split("<Content><![CDATA[", 1)[1].rsplit("]]></Content>", 1)[0]

    async def step(self, userid: str, words: str) -> str | None:
        t = self.tally
        msg_id = next(_msg_ids)
        xml = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{userid}]]>"
               f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
               f"<Content><![CDATA[{words}]]></Content><MsgId>{msg_id}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>")
        started = time.monotonic()
        for _try in range(1 + RETRIES):
            query, body = self._seal(xml)
            t.tries += 1
            sent = time.monotonic()
            answer = await self._post(query, body)
            if answer is None:
                t.hung_up += 1
                continue
            t.answer_times.append(time.monotonic() - sent)
            status, data = answer
            if status == 403:
                t.refused += 1
                continue
            if status == 200 and data.startswith(b"<xml>"):
                t.passive += 1
                t.reply_times.append(time.monotonic() - started)
                return self._open(data)
            if status == 200:  # "success": the reply comes through the API
                break
        acknowledged = time.monotonic()
        try:
            text = await asyncio.wait_for(self.api.inbox[userid].get(), REPLY_WAIT)
        except TimeoutError:
            t.lost += 1
            return None
        t.via_api += 1
        t.api_waits.append(time.monotonic() - acknowledged)
        t.reply_times.append(time.monotonic() - started)
        return text

    async def volunteer(self, userid: str) -> None:
        reply: str | None = None
        for words in SCRIPT:
            reply = await self.step(userid, words)
            if reply is None:
                return
            await asyncio.sleep(self.think)
        if reply is not None and "已保存" in reply:
            self.tally.completed += 1


# ---------------------------------------------------------------------------- one run

def prepare(db_path: Path, volunteers: int) -> str:
    from sqlalchemy import insert

    from benchmarks.synthetic import build_county
    from storage.db import Database
    from storage.models import ChannelAddress

    os.environ["WARMLINE_DATA_KEY"] = BENCH_DATA_KEY
    url = fresh_sqlite(db_path)
    db = Database(url)
    build_county(db, volunteers * 8, today=START.date(), visits_per_household=1, readings_per_household=1)
    with db.session() as s:
        s.execute(insert(ChannelAddress), [{"person_id": v, "channel": "wecom", "address": f"v{v:05d}",
                                            "created_at": START} for v in range(1, volunteers + 1)])
    db.dispose()
    return url


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=False)).get("ListenOverflows", 0))
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def serving(port: int, timeout: float = 60.0) -> None:
    """Until /healthz answers 200. Not a bare TCP connect: `warmline run` binds its socket (with a
    short kernel queue) before the app is up, and a burst sent then meets that queue, not the
    configured `[http] listen_backlog`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            if answer.startswith(b"HTTP/1.1 200"):
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("warmline run did not come up")


async def run_once(volunteers: int, think: float, workdir: Path, *, admission: bool) -> dict[str, Any]:
    url = prepare(workdir / f"wecom-{volunteers}.db", volunteers)
    api = FakeWeComAPI()
    await api.start()
    port = free_port()
    config = workdir / "load.toml"
    config.write_text("[wecom]\nlink_by_mobile = false\n" + os.environ.get("WECOM_LOAD_EXTRA", "")
                      + ("" if admission else "[core]\nmax_concurrent_steps = 100000\n"))
    env = {**os.environ, "WARMLINE_DATABASE_URL": url, "WARMLINE_DATA_KEY": BENCH_DATA_KEY,
           "WARMLINE_CONFIG": str(config), "WARMLINE_HTTP_PORT": str(port),
           "WARMLINE_WECOM_CORP_ID": CORP_ID, "WARMLINE_WECOM_SECRET": "bench-secret",
           "WARMLINE_WECOM_AGENT_ID": str(AGENT_ID), "WARMLINE_WECOM_TOKEN": TOKEN,
           "WARMLINE_WECOM_AES_KEY": AES_KEY, "WARMLINE_WECOM_API_BASE": f"http://127.0.0.1:{api.port}/cgi-bin/",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with (workdir / f"server-{volunteers}.log").open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--no-scheduler"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=log)
    try:
        await serving(port)
        platform = Platform(port, api, think)
        cpu_before = cpu_seconds(server.pid)
        overflows_before = listen_overflows()
        load_before = os.getloadavg()[0]
        driver_before = time.process_time()
        started = time.monotonic()
        await asyncio.gather(*(platform.volunteer(f"v{v:05d}") for v in range(1, volunteers + 1)))
        wall = time.monotonic() - started
        await asyncio.sleep(1.0)  # anything still arriving is a duplicate
        t = platform.tally
        t.duplicates = sum(q.qsize() for q in api.inbox.values())
        cpu = cpu_seconds(server.pid) - cpu_before
        overflows = listen_overflows() - overflows_before
        load_after = os.getloadavg()[0]
        driver_cpu = time.process_time() - driver_before
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        if api.server is not None:
            api.server.close()
    answers, replies, connects = sorted(t.answer_times), sorted(t.reply_times), sorted(t.connect_times)
    steps = volunteers * len(SCRIPT)
    return {
        "volunteers": volunteers, "admission": admission, "dialogs_completed": t.completed,
        "steps": steps, "replies_lost": t.lost, "replies_over_60s": sum(r > SLOW for r in replies),
        "duplicates": t.duplicates,
        "posts": t.tries, "posts_after_5s": t.hung_up, "hung_up_before_accept": t.hung_connecting,
        "refused_403": t.refused,
        "connect_p99_ms": round(percentile(connects, 99) * 1000), "connect_max_ms": round(connects[-1] * 1000),
        "connects_over_1s": sum(c > 1.0 for c in connects), "listen_overflows_machine": overflows,
        "answer_p50_ms": round(percentile(answers, 50) * 1000), "answer_p99_ms": round(percentile(answers, 99) * 1000),
        "answer_max_ms": round(answers[-1] * 1000) if answers else None,
        "answers_over_4_5s": sum(a > 4.5 for a in answers),
        "reply_p50_ms": round(percentile(replies, 50) * 1000), "reply_p99_ms": round(percentile(replies, 99) * 1000),
        "api_wait_p50_ms": round(percentile(sorted(t.api_waits), 50) * 1000) if t.api_waits else None,
        "api_wait_p99_ms": round(percentile(sorted(t.api_waits), 99) * 1000) if t.api_waits else None,
        "passive_share": round(t.passive / max(1, t.passive + t.via_api), 3),
        "wall_s": round(wall, 1), "server_cpu_s": round(cpu, 1), "platform_cpu_s": round(driver_cpu, 1),
        "api_sends": api.sends, "load_1m": [round(load_before, 2), round(load_after, 2)],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--think", type=float, default=0.3)
    parser.add_argument("--baseline", action="store_true", help="also run with admission control off")
    parser.add_argument("--keep", help="a directory to keep the databases and server logs in")
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}, ensure_ascii=False))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for n in args.volunteers:
            for admission in ([True, False] if args.baseline else [True]):
                result = await run_once(n, args.think, workdir, admission=admission)
                print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
