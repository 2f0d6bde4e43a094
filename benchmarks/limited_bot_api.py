"""A fake Telegram Bot API that enforces Telegram-like sending limits, run as its own process.

    python benchmarks/limited_bot_api.py --port 8123 [--per-second 30] [--per-chat-interval 1]

sendMessage is accepted unless it would make more than `per-second` messages in the trailing
second overall, or a second message to one chat within `per-chat-interval` seconds; then it
answers 429 "Too Many Requests: retry after 1" with `parameters.retry_after`, as Telegram does.
GET /stats returns what it saw: accepted messages, 429s (and when), duplicate texts (each
benchmark message carries a unique number), per-chat order and the first/last acceptance time.
It runs in its own process so its work does not share the worker's interpreter.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BOT = {"id": 7000002, "is_bot": True, "first_name": "暖心", "username": "warmline_rate_bot",
       "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}


class Limits:
    def __init__(self, per_second: int, per_chat_interval: float) -> None:
        self.per_second = per_second
        self.per_chat_interval = per_chat_interval
        self.recent: deque[float] = deque()
        self.last_by_chat: dict[int, float] = {}
        self.accepted: list[tuple[float, int, str]] = []
        self.rejected: list[tuple[float, int, str]] = []  # (time, chat, which limit)
        self.ids = itertools.count(1)

    def admit(self, chat: int, now: float) -> str | None:
        while self.recent and now - self.recent[0] >= 1.0:
            self.recent.popleft()
        if len(self.recent) >= self.per_second:
            return "overall"
        last = self.last_by_chat.get(chat)
        if last is not None and now - last < self.per_chat_interval:
            return "per_chat"
        self.recent.append(now)
        self.last_by_chat[chat] = now
        return None

    def stats(self) -> dict[str, Any]:
        texts = [t for _, _, t in self.accepted]
        seen: set[str] = set()
        duplicates = 0
        for text in texts:
            duplicates += text in seen
            seen.add(text)
        out_of_order = 0
        last_number: dict[int, int] = {}
        for _, chat, text in self.accepted:
            number = int(text.rsplit("#", 1)[-1]) if "#" in text else 0
            out_of_order += number < last_number.get(chat, 0)
            last_number[chat] = number
        times = [t for t, _, _ in self.accepted]
        return {"accepted": len(self.accepted), "unique": len(seen), "duplicates": duplicates,
                "out_of_order": out_of_order, "rejected": len(self.rejected),
                "rejected_by": {k: sum(1 for r in self.rejected if r[2] == k) for k in ("overall", "per_chat")},
                "rejected_at": [round(t - times[0], 3) if times else t for t, _, _ in self.rejected][:50],
                "first": times[0] if times else None, "last": times[-1] if times else None}


def build(limits: Limits) -> Starlette:
    async def endpoint(request: Request) -> JSONResponse:
        method = request.path_params["method"]
        body = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            params = json.loads(body or b"{}")
        else:
            params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if method == "getMe":
            return JSONResponse({"ok": True, "result": BOT})
        if method != "sendMessage":
            return JSONResponse({"ok": True, "result": True})
        chat = int(params.get("chat_id", 0))
        now = time.monotonic()
        refused = limits.admit(chat, now)
        if refused is not None:
            limits.rejected.append((now, chat, refused))
            return JSONResponse({"ok": False, "error_code": 429,
                                 "description": "Too Many Requests: retry after 1",
                                 "parameters": {"retry_after": 1}}, status_code=429)
        text = str(params.get("text", ""))
        limits.accepted.append((now, chat, text))
        return JSONResponse({"ok": True, "result": {
            "message_id": next(limits.ids), "date": int(time.time()), "text": text,
            "chat": {"id": chat, "type": "private"},
            "from": {"id": BOT["id"], "is_bot": True, "first_name": BOT["first_name"]}}})

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse(limits.stats())

    return Starlette(routes=[Route("/stats", stats), Route("/bot{token}/{method}", endpoint, methods=["GET", "POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--per-second", type=int, default=30)
    parser.add_argument("--per-chat-interval", type=float, default=1.0)
    args = parser.parse_args()
    app = build(Limits(args.per_second, args.per_chat_interval))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
