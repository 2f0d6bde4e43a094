"""WeChat and WeCom access tokens: fetched from the configured API base, shared through the database.

An access token lives two hours and fetching a new one invalidates the old one (after a short
grace period), so several `warmline run` workers must not each fetch their own: the token sits
in the Lease table, and a refresh takes that row's write lock first, then re-reads it — a worker
that waited finds the token another worker just fetched and uses it instead of fetching again.

wechatpy's client retries a token error by recursing without limit; `WxClientMixin` turns that
off (`auto_retry=False`) and allows exactly one refresh-and-retry per call.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from wechatpy.exceptions import WeChatClientException

from storage.db import Database
from storage.models import Lease

log = logging.getLogger("warmline.wechat.token")

# 40001 invalid credential, 40014 invalid access_token, 42001 access_token expired
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
REFRESH_MARGIN = timedelta(minutes=5)  # refresh this long before WeChat's expiry
MEMO_SECONDS = 60.0  # a worker re-reads the shared token at most this often
POOL_SIZE = 32  # HTTP connections kept alive to the platform's API
T = TypeVar("T")


class TokenFetchError(Exception):
    """The token endpoint refused or failed; errcode is WeChat's code, or None for HTTP trouble."""

    def __init__(self, errcode: int | None, detail: str = "") -> None:
        super().__init__(f"token fetch failed errcode={errcode} {detail}".strip())
        self.errcode = errcode


def real_now() -> datetime:
    """Tokens expire in the real world, whatever clock the program runs on."""
    return datetime.now(UTC)


def api_base(value: str | None, default: str) -> str:
    """The API root with exactly one trailing slash, e.g. https://api.weixin.qq.com/cgi-bin/."""
    base = (value or default).strip()
    return base.rstrip("/") + "/"


class LeaseTokenCache:
    """One access token per (platform, account), stored in the Lease table and refreshed under its lock."""

    def __init__(self, db: Database, name: str, fetch: Callable[[], tuple[str, int]],
                 now: Callable[[], datetime] = real_now) -> None:
        self.db = db
        self.name = name[:64]
        self.fetch = fetch
        self.now = now
        self.holder = f"pid{os.getpid()}"[:64]
        self._memo: tuple[str, datetime, float] | None = None  # token, its expiry, when read

    def current(self) -> str:
        """A token that is still good, fetching one only when the shared row has none.

        The row is read at most once a minute per worker (a busy morning sends thousands of
        messages); a token another worker fetched meanwhile is found then, or at once when the
        platform refuses ours (`refresh` reads the row first).
        """
        memo = self._memo
        if memo is not None and time.monotonic() - memo[2] < MEMO_SECONDS \
                and memo[1] - REFRESH_MARGIN > self.now():
            return memo[0]
        with self.db.session() as session:
            row = session.get(Lease, self.name)
            if row is not None and self._fresh(row):
                self._remember(row)
                return str(row.value)
            stale = row.value if row is not None else None
        return self.refresh(stale)

    def _remember(self, row: Lease) -> None:
        if row.value and row.expires_at is not None:
            self._memo = (str(row.value), row.expires_at, time.monotonic())

    def refresh(self, stale: str | None) -> str:
        """Replace `stale` (the token WeChat just refused, or None); at most one worker fetches."""
        for _ in range(2):  # a second pass only when two workers created the row at once
            try:
                return self._refresh_once(stale)
            except IntegrityError:
                continue
        return self._refresh_once(stale)

    def _refresh_once(self, stale: str | None) -> str:
        with self.db.session() as session:
            # Writing first takes the row's lock (PostgreSQL) or the database's write lock
            # (SQLite), so the read below sees whatever a worker that held it before us stored.
            touched = session.execute(update(Lease).where(Lease.name == self.name)
                                      .values(holder=self.holder)).rowcount
            if not touched:
                session.add(Lease(name=self.name, holder=self.holder))
                session.flush()
            row = session.get(Lease, self.name, populate_existing=True)
            assert row is not None
            if row.value and row.value != stale and self._fresh(row):
                self._remember(row)
                return str(row.value)
            token, expires_in = self.fetch()
            row.value = token
            row.expires_at = self.now() + timedelta(seconds=max(60, int(expires_in)))
            self._remember(row)
            log.info("access token refreshed name=%s", self.name.split(":")[0])
            return token

    def forget(self) -> None:
        """Drop the cached token (tests, and an operator rotating the secret)."""
        self._memo = None
        with self.db.session() as session:
            row = session.get(Lease, self.name)
            if row is not None:
                row.value = None
                row.expires_at = None

    def _fresh(self, row: Lease) -> bool:
        return bool(row.value) and row.expires_at is not None and row.expires_at - REFRESH_MARGIN > self.now()


class WxClientMixin:
    """Makes a wechatpy client use the configured API base, the shared token and a bounded retry.

    Mixed in before wechatpy's client class; `_setup_wx` must be called after its __init__.
    """

    API_BASE_URL: str
    _http: requests.Session
    tokens: LeaseTokenCache

    def _setup_wx(self, db: Database, lease_name: str, base: str, timeout: float) -> None:
        self.API_BASE_URL = base
        self.timeout = timeout
        # kept-alive connections for every sending thread (replies' own and the default pool's);
        # requests keeps 10 per host, and a thread finding none opens and drops a new one
        self._http.mount(base, HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE))
        self.auto_retry = False  # wechatpy would recurse on every token error, without limit
        self.tokens = LeaseTokenCache(db, lease_name, self._fetch_token)

    # wechatpy reads this property before each call
    @property
    def access_token(self) -> str:  # type: ignore[override]
        return self.tokens.current()

    def fetch_access_token(self) -> dict[str, Any]:
        return {"access_token": self.tokens.refresh(None)}

    def _token_request(self) -> tuple[str, dict[str, str]]:
        raise NotImplementedError

    def _fetch_token(self) -> tuple[str, int]:
        endpoint, params = self._token_request()
        try:
            response = self._http.get(self.API_BASE_URL + endpoint, params=params, timeout=self.timeout)
            response.raise_for_status()
            result = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise TokenFetchError(None, type(exc).__name__) from exc
        if not isinstance(result, dict):
            raise TokenFetchError(None, "not an object")
        errcode = int(result.get("errcode") or 0)
        if errcode or not result.get("access_token"):
            raise TokenFetchError(errcode or None, str(result.get("errmsg", ""))[:80])
        return str(result["access_token"]), int(result.get("expires_in") or 7200)

    def call(self, fn: Callable[[], T]) -> T:
        """Run one API call; on a token error refresh the token once and try once more."""
        used = self.tokens.current()
        try:
            return fn()
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            log.info("token refused errcode=%s; refreshing once", exc.errcode)
            self.tokens.refresh(used)
            return fn()
