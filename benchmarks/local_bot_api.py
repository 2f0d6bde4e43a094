"""An in-memory Bot API for python-telegram-bot: every call answered in the same process.

The dialog benchmark measures the conversation engines, not a network: both Warmline and the
baseline send their replies through the real `telegram.Bot` (parameters serialised, the answer
parsed back into a `Message`), but the HTTP hop is replaced by this `BaseRequest`, which answers
like Telegram would. Both sides pay exactly the same for it.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from typing import Any

from telegram.request import BaseRequest, RequestData

BOT = {"id": 7000001, "is_bot": True, "first_name": "暖心", "username": "warmline_bench_bot",
       "can_join_groups": False, "can_read_all_group_messages": False,
       "supports_inline_queries": False}


class LocalBotAPI(BaseRequest):
    """Answers getMe, sendMessage, answerCallbackQuery and edits; counts every call."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._ids = itertools.count(1)

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: Any = None, write_timeout: Any = None,
                         connect_timeout: Any = None, pool_timeout: Any = None) -> tuple[int, bytes]:
        name = url.rsplit("/", 1)[-1]
        self.calls[name] += 1
        params = request_data.parameters if request_data is not None else {}
        result: Any = True
        if name == "getMe":
            result = BOT
        elif name in {"sendMessage", "editMessageText"}:
            result = {"message_id": next(self._ids), "date": int(time.time()),
                      "chat": {"id": int(params.get("chat_id", 0)), "type": "private"},
                      "from": {"id": BOT["id"], "is_bot": True, "first_name": BOT["first_name"]},
                      "text": str(params.get("text", ""))}
        return 200, json.dumps({"ok": True, "result": result}).encode()
