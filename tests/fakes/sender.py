"""A small httpx sender for the fake platform: the same classification a real channel sender makes."""

from __future__ import annotations

import os

import httpx

from bot.delivery.base import RateLimit, SendRequest, SendResult


class FakePlatformSender:
    """Talks HTTP to tests.fakes.platform.FakePlatform; one real connection pool per sender."""

    def __init__(self, base_url: str, *, channel: str = "fake", limits: RateLimit | None = None,
                 timeout: float = 2.0) -> None:
        self.channel = channel
        self.limits = limits or RateLimit(per_second=1000.0, per_recipient_interval=0.0)
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, request: SendRequest) -> SendResult:
        body = {"chat": request.address, "text": request.payload.get("text", ""),
                "ref": request.outbox_id, "by": os.getpid()}
        try:
            response = await self._client.post("/send", json=body)
        except httpx.TimeoutException:
            return SendResult.retry("timeout")
        except httpx.TransportError as exc:
            return SendResult.retry(f"network: {type(exc).__name__}")
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code == 429:
            retry_after = float((data.get("parameters") or {}).get("retry_after") or 1)
            return SendResult.retry("429 too many requests", retry_after=retry_after)
        if response.status_code == 403:
            return SendResult.failed("403 blocked by the recipient", unreachable=True)
        if response.status_code >= 500:
            return SendResult.retry(f"http {response.status_code}")
        if response.status_code >= 400:
            return SendResult.failed(f"http {response.status_code}")
        if data.get("errcode") == 45009:
            return SendResult.retry("quota exhausted", retry_after=float(data.get("retry_after") or 60))
        if not data.get("ok"):
            return SendResult.retry("platform said not ok")
        return SendResult.sent(str(data.get("message_id")))
