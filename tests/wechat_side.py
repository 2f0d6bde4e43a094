"""WeChat's side of the webhook, for tests: signed and AES-encrypted posts to a live HTTP app.

`live_http` runs the real Starlette app under uvicorn on 127.0.0.1 (an ephemeral port) in the
test's event loop; `Poster` signs (and in safe mode encrypts) message XML the way WeChat's and
WeCom's servers do — each try with the real time and a fresh nonce — and reads encrypted
passive replies back.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
import xmltodict
from starlette.routing import BaseRoute

from bot.http import build_http_app

_times = itertools.count(1795000000)


@asynccontextmanager
async def live_http(routes: Sequence[BaseRoute]) -> AsyncIterator[httpx.AsyncClient]:
    config = uvicorn.Config(build_http_app(routes), host="127.0.0.1", port=0, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15,
                                     trust_env=False) as client:
            yield client
    finally:
        server.should_exit = True
        await task


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def cdata(value: Any) -> str:
    return f"<![CDATA[{value}]]>" if isinstance(value, str) else str(value)


def message_xml(sender: str, *, to: str = "gh_warmline_test", msg_type: str = "text",
                create_time: int | None = None, **fields: Any) -> str:
    """A WeChat push as XML: <xml><ToUserName>…</xml>, fields in the order given."""
    body = {"ToUserName": to, "FromUserName": sender,
            "CreateTime": create_time if create_time is not None else next(_times),
            "MsgType": msg_type, **fields}
    inner = "".join(f"<{k}>{v if k.startswith('_raw') else cdata(v)}</{k}>" for k, v in body.items())
    return f"<xml>{inner}</xml>"


def text_xml(sender: str, content: str, msg_id: int, **extra: Any) -> str:
    return message_xml(sender, Content=content, MsgId=msg_id, **extra)


def event_xml(sender: str, event: str, key: str | None = None, **extra: Any) -> str:
    fields: dict[str, Any] = {"Event": event}
    if key is not None:
        fields["EventKey"] = key
    return message_xml(sender, msg_type="event", **fields, **extra)


class Poster:
    """Posts to one webhook path as WeChat (plain or safe mode) or WeCom (always encrypted)."""

    def __init__(self, client: httpx.AsyncClient, path: str, token: str, crypto: Any = None,
                 *, wecom: bool = False) -> None:
        self.client = client
        self.path = path
        self.token = token
        self.crypto = crypto
        self.wecom = wecom

    @staticmethod
    def stamp() -> tuple[str, str]:
        """The (timestamp, nonce) of one try: the real time, as the platform's servers sign it."""
        return str(int(time.time())), str(secrets.randbelow(10**10))

    async def plain(self, xml: str, **override: str) -> httpx.Response:
        timestamp, nonce = self.stamp()
        params = {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp,
                  "nonce": nonce, "openid": "ignored", **override}
        return await self.client.post(self.path, params=params, content=xml.encode())

    def seal(self, xml: str, timestamp: str | None = None, nonce: str | None = None) -> tuple[dict[str, str], bytes]:
        """The query parameters and body of one encrypted try, as the platform builds them."""
        fresh_timestamp, fresh_nonce = self.stamp()
        timestamp, nonce = timestamp or fresh_timestamp, nonce or fresh_nonce
        sealed = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, timestamp))["xml"]
        body = f"<xml><ToUserName>{cdata('gh_warmline_test')}</ToUserName><Encrypt>{cdata(sealed['Encrypt'])}</Encrypt></xml>"
        params = {"timestamp": timestamp, "nonce": nonce, "msg_signature": sealed["MsgSignature"]}
        if not self.wecom:
            params |= {"signature": sign(self.token, timestamp, nonce), "encrypt_type": "aes"}
        return params, body.encode()

    async def encrypted(self, xml: str, **override: str) -> httpx.Response:
        params, body = self.seal(xml)
        return await self.client.post(self.path, params={**params, **override}, content=body)

    def open_reply(self, response: httpx.Response) -> dict[str, Any]:
        """A passive reply as a dict, decrypted (and its signature checked) when it was sealed."""
        outer = xmltodict.parse(response.text)["xml"]
        if "Encrypt" not in outer:
            return dict(outer)
        plain = self.crypto.decrypt_message(response.text, outer["MsgSignature"], outer["TimeStamp"],
                                            outer["Nonce"])
        return dict(xmltodict.parse(plain)["xml"])


class HeldWrites:
    """Another writer holding the database, so a step must wait (SQLite: the write lock;
    PostgreSQL: the outbox table, which every step writes its replies to)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            import sqlite3

            self._sqlite = sqlite3.connect(str(parsed.database), timeout=5, isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
            self._pg = None
        else:
            self._sqlite = None
            engine = create_engine(parsed.set(drivername="postgresql+psycopg"), poolclass=NullPool)
            self._pg = engine.connect()
            self._pg.execute(text("LOCK TABLE outbox IN EXCLUSIVE MODE"))

    def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            self._pg.rollback()
            self._pg.close()
            self._pg = None
