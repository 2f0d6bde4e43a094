"""python-telegram-bot's HTTP transport on aiohttp instead of its default, httpx.

Why: every step sends at least one Bot API request, and in `benchmarks/telegram_e2e.py` PTB's
httpx transport spent about 0.7 ms of CPU a request — a third of the bot's whole CPU time per
step — where aiohttp spends about 0.2 ms. PTB documents `BaseRequest` as the place to plug in
another networking backend; everything above it (the Bot API methods, their JSON, errors,
`retry_after`) is PTB's own, unchanged.

Request bodies are what PTB's default sends: the parameters form-encoded (each value already
JSON-encoded by PTB), or multipart when a file is uploaded. Timeouts are PTB's four (connect,
read, write, pool); a timeout raises PTB's `TimedOut`, any other transport failure its
`NetworkError`, so callers see the same exceptions as with the default transport. aiohttp logs
no request URLs (which hold the bot token).
"""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class AiohttpRequest(BaseRequest):
    """One connection pool (`connection_pool_size` connections) per instance, as PTB's own."""

    def __init__(self, connection_pool_size: int = 256, *, connect_timeout: float | None = 5.0,
                 read_timeout: float | None = 5.0, write_timeout: float | None = 5.0,
                 pool_timeout: float | None = 1.0, media_write_timeout: float | None = 20.0) -> None:
        self._pool_size = connection_pool_size
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size),
                headers={"User-Agent": self.USER_AGENT}, auto_decompress=True)

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data and request_data.contains_files else None
        fields = request_data.json_parameters if request_data else {}
        body: aiohttp.FormData | bytes | None = None
        headers: dict[str, str] | None = None
        if files:
            body = aiohttp.FormData(quote_fields=False)
            for name, value in fields.items():
                body.add_field(name, value)
            for name, part in files.items():
                filename, content, *mime = part
                body.add_field(name, content, filename=filename,
                               content_type=mime[0] if mime else "application/octet-stream")
        elif fields:
            # the form aiohttp would build from the dict, encoded directly: its FormData (a
            # multipart writer with a fresh uuid4 boundary, then discarded) cost about 3 % of the
            # bot's CPU under load (a request per step; benchmarks/telegram_e2e.py)
            body = urlencode(fields).encode()
            headers = FORM
        read = _given(read_timeout, self._read_timeout)
        write = _given(write_timeout, self._media_write_timeout if files else self._write_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        # aiohttp has no write timeout: the whole request is bounded by the sum of the four
        timeout = aiohttp.ClientTimeout(
            total=None if read is None or write is None else read + write + (connect or 0) + (pool or 0),
            connect=None if connect is None else connect + (pool or 0),  # a pooled connection, or a new one
            sock_connect=connect, sock_read=read)
        try:
            async with self._session.request(method, url, data=body, headers=headers,
                                             timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc


def _given(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value
