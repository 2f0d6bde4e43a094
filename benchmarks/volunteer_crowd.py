"""A fake Telegram Bot API with a crowd of volunteers behind it, for end-to-end benchmarks.

The bot under test (`warmline run`, or the python-telegram-bot baseline) polls this server as it
would poll Telegram. Each volunteer answers the bot's question `think` seconds after the last
message of its reply arrived, by text (the way a volunteer types numbers and readings), until it
has recorded its health readings. The server measures what a volunteer feels:

- first reply: from the moment a volunteer's message is available to getUpdates to the first
  message the bot sends back to that chat;
- steps: messages the volunteers sent that were answered, per second of the whole run.

A reply is complete when a message carries the next question (matched by the catalogue's words,
which both bots use), so a reply split over several messages is answered after its last one.
getUpdates honours `offset` as Telegram does (updates below it are forgotten, those at or above
it are returned again) and answers a long poll as soon as an update arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BOT = {"id": 7000003, "is_bot": True, "first_name": "暖心", "username": "warmline_crowd_bot",
       "can_join_groups": False, "can_read_all_group_messages": False,
       "supports_inline_queries": False}
START_WORD = "健康数据"
# (words in the bot's question, what the volunteer types), first match wins: the summary also
# says "建议", the saved message also carries the menu.
ANSWERS: tuple[tuple[str, str | None], ...] = (
    ("已保存", None),  # a reading done: the next one, or stop
    ("确认保存", "1"),
    ("测了什么", "135/85 72"),
    ("哪位老人", "1"),
    ("建议", "无"),
    ("哪一户", "1"),
    ("选一户", "1"),
)


@dataclass
class Volunteer:
    chat_id: int
    readings_left: int
    pushed_at: float | None = None  # when the unanswered message became available
    answered_first: bool = True
    steps: int = 0
    done: bool = False


@dataclass
class Crowd:
    """The volunteers, their pending updates and what was measured."""

    think: float
    readings: int
    volunteers: dict[int, Volunteer] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    first_reply: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    sends: int = 0
    get_updates_calls: int = 0
    started: float = 0.0
    finished: float = 0.0
    closing: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _all_done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, chat_ids: list[int]) -> None:
        for chat_id in chat_ids:
            self.volunteers[chat_id] = Volunteer(chat_id, self.readings)

    def begin(self) -> None:
        """Every volunteer opens the reading dialog at once."""
        self.started = time.monotonic()
        for volunteer in self.volunteers.values():
            self._push(volunteer, START_WORD)

    def _push(self, volunteer: Volunteer, text: str) -> None:
        uid = next(self._ids)
        self.updates.append({"update_id": uid, "message": {
            "message_id": uid, "date": int(time.time()), "text": text,
            "chat": {"id": volunteer.chat_id, "type": "private", "first_name": "志愿者"},
            "from": {"id": volunteer.chat_id, "is_bot": False, "first_name": "志愿者"}}})
        volunteer.pushed_at = time.monotonic()
        volunteer.answered_first = False
        self._arrived.set()

    def on_message(self, chat_id: int, text: str) -> None:
        volunteer = self.volunteers.get(chat_id)
        self.sends += 1
        if volunteer is None or volunteer.done:
            return
        now = time.monotonic()
        if not volunteer.answered_first and volunteer.pushed_at is not None:
            self.first_reply.append(now - volunteer.pushed_at)
            volunteer.answered_first = True
        matched = [answer for words, answer in ANSWERS if words in text]
        if not matched:
            if len(self.unexpected) < 20:
                self.unexpected.append(text[:80])
            return  # not a question: more of the reply is on its way
        answer = matched[0]
        volunteer.steps += 1
        if answer is None:
            volunteer.readings_left -= 1
            if volunteer.readings_left <= 0:
                volunteer.done = True
                if all(v.done for v in self.volunteers.values()):
                    self.finished = now
                    self._all_done.set()
                return
            answer = START_WORD
        asyncio.get_running_loop().call_later(self.think, self._push, volunteer, answer)

    async def next_updates(self, offset: int | None, timeout: float, limit: int) -> list[dict[str, Any]]:
        self.get_updates_calls += 1
        deadline = time.monotonic() + timeout
        while True:
            if offset is not None:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            if self.updates or self.closing or time.monotonic() >= deadline:
                return self.updates[:limit]
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(0.0, deadline - time.monotonic()))

    async def wait_done(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._all_done.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        """Answer a held long poll at once (the server is about to stop)."""
        self.closing = True
        self._arrived.set()

    def steps(self) -> int:
        return sum(v.steps for v in self.volunteers.values())


def build_app(crowd: Crowd) -> Starlette:
    message_ids = itertools.count(1)

    async def endpoint(request: Request) -> JSONResponse:
        method = request.path_params["method"]
        body = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            params: dict[str, Any] = json.loads(body or b"{}")
        else:
            params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if method == "getMe":
            return JSONResponse({"ok": True, "result": BOT})
        if method == "getUpdates":
            offset = params.get("offset")
            result = await crowd.next_updates(int(offset) if offset not in (None, "") else None,
                                              float(params.get("timeout") or 0),
                                              int(params.get("limit") or 100))
            return JSONResponse({"ok": True, "result": result})
        if method in {"sendMessage", "editMessageText"}:
            chat = int(params.get("chat_id", 0))
            text = str(params.get("text", ""))
            if method == "sendMessage":
                crowd.on_message(chat, text)
            return JSONResponse({"ok": True, "result": {
                "message_id": next(message_ids), "date": int(time.time()), "text": text,
                "chat": {"id": chat, "type": "private"},
                "from": {"id": BOT["id"], "is_bot": True, "first_name": BOT["first_name"]}}})
        return JSONResponse({"ok": True, "result": True})

    return Starlette(routes=[Route("/bot{token}/{method}", endpoint, methods=["GET", "POST"])])


async def serve(crowd: Crowd, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Start the fake API in this loop; `server.should_exit = True` stops it, then await the task."""
    config = uvicorn.Config(build_app(crowd), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task
