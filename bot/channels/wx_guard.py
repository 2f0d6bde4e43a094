"""Proof that a webhook POST comes from WeChat or WeCom, now, and for the first time.

Three checks, in this order, before a body is decrypted or read:
- the signature, compared in constant time (`hmac.compare_digest`; wechatpy compares with `!=`);
  in safe mode `msg_signature` covers the token, timestamp, nonce *and* the ciphertext, so a body
  cannot be swapped under a genuine URL;
- the timestamp, which must lie within ±`FRESH_SECONDS` of the real clock;
- the (timestamp, nonce, signature) triple, which must not have been seen before. Seen triples
  are rows of `processed_inbound` (channel `<channel>-sig`), so every worker sharing the database
  agrees; rows older than the freshness window are pruned, since a replay that old fails the
  timestamp check anyway. WeChat signs each try of a message afresh (its retries carry a new
  timestamp and nonce), so refusing a repeated triple never refuses a genuine retry.

The plain-mode signature covers only token, timestamp and nonce, not the body: plain mode is
accepted only when no AES key is configured, and is safe only on a trusted network (README,
SECURITY.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import xmltodict  # wechatpy's own dependency
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from storage.db import Database, is_sqlite
from storage.models import ProcessedInbound

log = logging.getLogger("warmline.wechat.guard")

FRESH_SECONDS = 300
MAX_PART = 64  # WeChat's timestamps, nonces and SHA-1 signatures are far shorter
PRUNE_EVERY_SECONDS = 60.0


class Forbidden(Exception):
    """The request is not proven to come from the platform, now, for the first time."""


def signature_of(*parts: str) -> str:
    """WeChat's SHA-1 over the sorted, concatenated parts (token, timestamp, nonce[, ciphertext])."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def check_signature(expected_parts: tuple[str, ...], given: str | None) -> None:
    """Constant-time comparison of the signature the request carries with the one we compute."""
    if not given or len(given) > MAX_PART:
        raise Forbidden
    if not hmac.compare_digest(signature_of(*expected_parts).encode(), given.lower().encode()):
        raise Forbidden


def check_fresh(timestamp: str | None, now: Callable[[], float]) -> int:
    """The timestamp as an integer, refused when missing, malformed or more than 300 s off."""
    if not timestamp or len(timestamp) > MAX_PART or not timestamp.isdigit():
        raise Forbidden
    value = int(timestamp)
    if abs(now() - value) > FRESH_SECONDS:
        raise Forbidden
    return value


def check_parts(timestamp: str | None, nonce: str | None, signature: str | None) -> tuple[str, str, str]:
    if not timestamp or not nonce or not signature:
        raise Forbidden
    if len(nonce) > MAX_PART or len(timestamp) > MAX_PART or len(signature) > MAX_PART:
        raise Forbidden
    return timestamp, nonce, signature


class SeenRequests:
    """Remembers (timestamp, nonce, signature) triples in the database, several workers agreeing.

    Concurrent requests are recorded in one transaction (one commit for a burst), each learning
    whether its triple was new: an INSERT … ON CONFLICT DO NOTHING RETURNING names the new ones.
    """

    def __init__(self, db: Database, channel: str, now: Callable[[], float] = time.time) -> None:
        self.db = db
        self.tag = f"{channel}-sig"[:16]
        self.now = now
        self._pending: dict[str, list[asyncio.Future[bool]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._recent: dict[str, float] = {}  # this worker's triples (insertion order = age)

    def _remember(self, keys: dict[str, list[asyncio.Future[bool]]]) -> None:
        now = self.now()
        for key in keys:
            self._recent.setdefault(key, now)
        while self._recent:
            key, seen = next(iter(self._recent.items()))
            if now - seen <= 2 * FRESH_SECONDS:
                break
            del self._recent[key]

    async def first_time(self, timestamp: str, nonce: str, signature: str) -> bool:
        key = f"{timestamp}:{nonce}:{signature.lower()}"[:128]
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiting = self._pending.setdefault(key, [])
        waiting.append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the requests already running join this batch
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                new = await self._record(list(batch))
            except Exception as exc:
                # The database cannot say: refusing would lose genuine messages (the platform
                # does not resend a refused one), so this worker's own memory decides for now.
                log.warning("replay check by memory only error=%s", type(exc).__name__)
                new = {key for key in batch if key not in self._recent}
            self._remember(batch)
            for key, futures in batch.items():
                for i, future in enumerate(futures):
                    if not future.done():
                        future.set_result(key in new and i == 0)  # a copy in the same burst is a replay

    async def _record(self, keys: list[str]) -> set[str]:
        wall = datetime.fromtimestamp(self.now(), UTC)
        dialect = sqlite if is_sqlite(self.db.url) else postgresql
        statement = (dialect.insert(ProcessedInbound)
                     .values([{"channel": self.tag, "inbound_key": k, "processed_at": wall} for k in keys])
                     .on_conflict_do_nothing()
                     .returning(ProcessedInbound.inbound_key))
        async with self.db.async_session() as session:
            new = set((await session.scalars(statement)).all())
            if self.now() - self._last_prune > PRUNE_EVERY_SECONDS:
                self._last_prune = self.now()
                await session.execute(delete(ProcessedInbound).where(
                    ProcessedInbound.channel == self.tag,
                    ProcessedInbound.processed_at < wall - timedelta(seconds=2 * FRESH_SECONDS)))
        return new


def open_sealed(crypto: object, prp_class: type, body: bytes, timestamp: str, nonce: str,
                msg_signature: str) -> str:
    """The plain XML inside a safe-mode body (checked for DTDs by the caller), after a
    constant-time check of `msg_signature`.

    The signature covers the ciphertext, so it is checked before anything is decrypted; the
    decryption itself (wechatpy's) checks that the message was sealed for our app id or corp id.
    """
    outer = xmltodict.parse(body)
    encrypt = outer.get("xml", {}).get("Encrypt") if isinstance(outer, dict) else None
    if not isinstance(encrypt, str) or not encrypt:
        raise ValueError("no Encrypt element")
    check_signature((crypto.token, timestamp, nonce, encrypt), msg_signature)  # type: ignore[attr-defined]
    plain = prp_class(crypto.key).decrypt(encrypt, crypto._id)  # type: ignore[attr-defined]
    return plain.decode() if isinstance(plain, bytes) else str(plain)


def open_echo(crypto: object, prp_class: type, timestamp: str, nonce: str, msg_signature: str,
              echostr: str) -> str:
    """WeCom's URL check: the decrypted echostr, after a constant-time signature check.

    The URL check changes nothing and reveals only what the platform sent, so it is not held to
    the freshness window (the published test vectors are years old).
    """
    check_signature((crypto.token, timestamp, nonce, echostr), msg_signature)  # type: ignore[attr-defined]
    plain = prp_class(crypto.key).decrypt(echostr, crypto._id)  # type: ignore[attr-defined]
    return plain.decode() if isinstance(plain, bytes) else str(plain)
