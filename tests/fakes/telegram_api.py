"""A fake Telegram Bot API on 127.0.0.1, for running the real python-telegram-bot against.

It speaks the HTTP shape PTB uses (POST /bot<token>/<method>, form or multipart fields,
`{"ok": ..., "result": ...}` answers with Telegram's error codes), keeps the chats' messages so
buttons can be pressed and edits seen, queues updates for getUpdates, records every call, and
fails calls on demand (429 with retry_after, 403 for a user who blocked the bot, 400, 502).
It runs uvicorn in a background thread so tests can drive it from plain synchronous code.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN = "123456:TEST-token_for-fake-api"
BOT_ID = 123456
BOT_USERNAME = "warmline_test_bot"
JSON_FIELDS = {"chat_id", "message_id", "reply_markup", "offset", "limit", "timeout",
               "allowed_updates", "drop_pending_updates", "show_alert", "max_connections"}
SENDS = {"sendMessage", "sendPhoto", "sendDocument"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    files: dict[str, int] = field(default_factory=dict)  # field name -> bytes received


@dataclass
class Fault:
    method: str
    status: int
    description: str
    times: int
    chat_id: int | None = None
    retry_after: int | None = None


class FakeBotAPI:
    """The fake server; `start()` it, point WARMLINE_TELEGRAM_BASE_URL at `base_url`."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.port = free_port()
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.blocked: set[int] = set()
        self.webhook: dict[str, Any] | None = None
        self._faults: list[Fault] = []
        self._slow: dict[tuple[str, int], float] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- running

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeBotAPI:
        app = Starlette(routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake Bot API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._closing = True  # held long polls answer at once
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------ test controls

    def fail(self, method: str, status: int, description: str, *, times: int = 1,
             chat_id: int | None = None, retry_after: int | None = None) -> None:
        """The next `times` calls of `method` (to `chat_id`, if given) fail this way."""
        with self._lock:
            self._faults.append(Fault(method, status, description, times, chat_id, retry_after))

    def flood(self, method: str, *, times: int, retry_after: int = 1) -> None:
        self.fail(method, 429, f"Too Many Requests: retry after {retry_after}", times=times,
                  retry_after=retry_after)

    def slow(self, method: str, chat_id: int, seconds: float) -> None:
        """Calls of `method` to `chat_id` are answered only after `seconds` (0: at once again),
        like a slow network path to one user; other chats are not affected."""
        with self._lock:
            if seconds > 0:
                self._slow[(method, chat_id)] = seconds
            else:
                self._slow.pop((method, chat_id), None)

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (numbered unless it carries its own update_id)."""
        with self._lock:
            update.setdefault("update_id", next(self._update_ids))
            self._updates.append(update)
        return update

    def new_update_id(self) -> int:
        return next(self._update_ids)

    def calls_of(self, method: str, chat_id: int | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method
                    and (chat_id is None or c.params.get("chat_id") == chat_id)]

    def delivered(self, chat_id: int) -> list[dict[str, Any]]:
        """Messages that reached this chat, oldest first (their current, possibly edited, form)."""
        with self._lock:
            return [m for (chat, _mid), m in sorted(self.messages.items()) if chat == chat_id]

    def unconfirmed(self) -> list[int]:
        """Ids of the updates the bot has not confirmed yet (getUpdates still returns them)."""
        with self._lock:
            return [int(u["update_id"]) for u in self._updates]

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    def wait_handled(self, update_id: int, timeout: float = 15.0) -> None:
        """Until the bot confirmed the update (asked for later ones), i.e. finished handling it."""
        def confirmed() -> bool:
            with self._lock:
                return all(u["update_id"] > update_id for u in self._updates)
        wait_until(confirmed, timeout, lambda: f"update {update_id} was not handled in time")

    # --------------------------------------------------------------- endpoint

    async def _endpoint(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        params, files = await self._params(request)
        if request.path_params["token"] != self.token:
            return self._error(method, params, 401, "Unauthorized")
        if method == "getUpdates":
            return await self._get_updates(params)
        delay = self._slow.get((method, params.get("chat_id")))  # type: ignore[arg-type]
        if delay:
            await asyncio.sleep(delay)
        with self._lock:
            fault = self._take_fault(method, params.get("chat_id"))
            if fault is not None:
                return self._error(method, params, fault.status, fault.description, fault.retry_after)
            if method in SENDS and params.get("chat_id") in self.blocked:
                return self._error(method, params, 403, "Forbidden: bot was blocked by the user")
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                return self._error(method, params, 404, "Not Found: method not found")
            try:
                result = handler(params, files)
            except LookupError as exc:
                return self._error(method, params, 400, f"Bad Request: {exc.args[0]}")
            self.calls.append(Call(method, params, time.monotonic(), 200, files))
        return JSONResponse({"ok": True, "result": result})

    async def _params(self, request: Request) -> tuple[dict[str, Any], dict[str, int]]:
        """Fields as PTB posts them: urlencoded, or multipart when a file goes along."""
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        fields: list[tuple[str, str]] = []
        files: dict[str, int] = {}
        if ctype.startswith("application/json"):
            return (json.loads(body) if body else {}), files
        if ctype.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
            for part in message.iter_parts():
                name = str(part.get_param("name", header="content-disposition"))
                data = part.get_payload(decode=True) or b""
                if part.get_filename():
                    files[name] = len(data)
                else:
                    fields.append((name, data.decode()))
        else:
            fields = parse_qsl(body.decode(), keep_blank_values=True)
        fields += list(request.query_params.items())
        params = {k: json.loads(v) if k in JSON_FIELDS else v for k, v in fields}
        return params, files

    def _take_fault(self, method: str, chat_id: Any) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.times > 0 and fault.chat_id in (None, chat_id):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _error(self, method: str, params: dict[str, Any], status: int, description: str,
               retry_after: int | None = None) -> JSONResponse:
        self.calls.append(Call(method, params, time.monotonic(), status))
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return JSONResponse(body, status_code=status)

    async def _get_updates(self, params: dict[str, Any]) -> JSONResponse:
        offset = params.get("offset")
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._lock:  # recorded on arrival: a long poll may be held open for seconds
            self.calls.append(Call("getUpdates", params, time.monotonic()))
        while True:
            with self._lock:
                if self.webhook is not None:
                    return self._error("getUpdates", params, 409, "Conflict: can't use getUpdates "
                                       "method while webhook is active; use deleteWebhook first")
                if offset is not None:  # confirms every update before it, as Telegram does
                    self._updates = [u for u in self._updates if u["update_id"] >= int(offset)]
                batch = self._updates[: int(params.get("limit") or 100)]
                if batch or self._closing or time.monotonic() >= deadline:
                    return JSONResponse({"ok": True, "result": batch})
            await asyncio.sleep(0.02)

    # ---------------------------------------------------------------- methods

    def _m_getMe(self, _p: dict[str, Any], _f: dict[str, int]) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "暖心", "username": BOT_USERNAME,
                "can_join_groups": False, "can_read_all_group_messages": False,
                "supports_inline_queries": False}

    def _m_deleteWebhook(self, _p: dict[str, Any], _f: dict[str, int]) -> bool:
        self.webhook = None
        return True

    def _m_setWebhook(self, p: dict[str, Any], _f: dict[str, int]) -> bool:
        self.webhook = dict(p)
        return True

    def _m_answerCallbackQuery(self, _p: dict[str, Any], _f: dict[str, int]) -> bool:
        return True

    def _new_message(self, p: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = int(p["chat_id"])
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "chat": {"id": chat_id, "type": "private", "first_name": "测试"},
                   "from": {"id": BOT_ID, "is_bot": True, "first_name": "暖心"}, **content}
        markup = p.get("reply_markup")
        if markup:
            message["reply_markup_sent"] = markup  # what the client was shown (any keyboard)
            if "inline_keyboard" in markup:
                message["reply_markup"] = markup
        self.messages[(chat_id, message["message_id"])] = message
        return message

    def _m_sendMessage(self, p: dict[str, Any], _f: dict[str, int]) -> dict[str, Any]:
        if not str(p.get("text") or "").strip():
            raise LookupError("message text is empty")
        return self._new_message(p, text=p["text"])

    def _m_sendPhoto(self, p: dict[str, Any], f: dict[str, int]) -> dict[str, Any]:
        size = f.get("photo", 0)
        content: dict[str, Any] = {"photo": [{"file_id": "p1", "file_unique_id": "p1", "width": 800,
                                              "height": 600, "file_size": size}]}
        if p.get("caption"):
            content["caption"] = p["caption"]
        return self._new_message(p, **content)

    def _m_sendDocument(self, p: dict[str, Any], f: dict[str, int]) -> dict[str, Any]:
        content: dict[str, Any] = {"document": {"file_id": "d1", "file_unique_id": "d1",
                                                "file_size": f.get("document", 0)}}
        if p.get("caption"):
            content["caption"] = p["caption"]
        return self._new_message(p, **content)

    def _stored(self, p: dict[str, Any]) -> dict[str, Any]:
        key = (int(p["chat_id"]), int(p["message_id"]))
        if key not in self.messages:
            raise LookupError("message to edit not found")
        return self.messages[key]

    def _m_editMessageText(self, p: dict[str, Any], _f: dict[str, int]) -> dict[str, Any]:
        message = self._stored(p)
        markup = p.get("reply_markup")
        if message.get("text") == p["text"] and message.get("reply_markup") == markup:
            raise LookupError("message is not modified")
        message["text"] = p["text"]
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        message["edited"] = True
        return message

    def _m_editMessageReplyMarkup(self, p: dict[str, Any], _f: dict[str, int]) -> dict[str, Any]:
        message = self._stored(p)
        markup = p.get("reply_markup")
        if message.get("reply_markup") == markup:
            raise LookupError("message is not modified")
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        message["edited"] = True
        return message


class TgUser:
    """One person in a private chat with the bot: types, taps buttons, shares a contact."""

    def __init__(self, api: FakeBotAPI, chat_id: int, first_name: str = "测试") -> None:
        self.api = api
        self.chat_id = chat_id
        self.first_name = first_name

    def _user(self) -> dict[str, Any]:
        return {"id": self.chat_id, "is_bot": False, "first_name": self.first_name}

    def message_update(self, **content: Any) -> dict[str, Any]:
        return {"update_id": self.api.new_update_id(), "message": {
            "message_id": next(self.api._message_ids), "date": int(time.time()),
            "chat": {"id": self.chat_id, "type": "private", "first_name": self.first_name},
            "from": self._user(), **content}}

    def text_update(self, text: str) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": len(text.split(" ")[0])}]
        return self.message_update(**content)

    def contact_update(self, phone: str, *, user_id: int | None = None) -> dict[str, Any]:
        return self.message_update(contact={
            "phone_number": phone, "first_name": self.first_name,
            "user_id": self.chat_id if user_id is None else user_id})

    def press_update(self, label_part: str = "", message: dict[str, Any] | None = None,
                     data: str | None = None) -> dict[str, Any]:
        """A tap on the button whose label contains `label_part` (latest message with buttons),
        or, with `data`, a callback carrying whatever payload a tampered client sends."""
        message = message or self.last_with_buttons()
        if data is None:
            data = self.button(label_part, message)
        return {"update_id": self.api.new_update_id(), "callback_query": {
            "id": str(next(self.api._callback_ids)), "from": self._user(),
            "chat_instance": f"ci{self.chat_id}", "data": data,
            "message": {k: v for k, v in message.items() if k != "reply_markup_sent"}}}

    def send(self, *updates: dict[str, Any]) -> list[dict[str, Any]]:
        """Queue updates, wait until the bot handled them, return the messages it sent here."""
        before = len(self.messages())
        for update in updates:
            self.api.push(update)
        for update in updates:
            self.api.wait_handled(int(update["update_id"]))
        return self.messages()[before:]

    def say(self, text: str) -> list[dict[str, Any]]:
        return self.send(self.text_update(text))

    def share_contact(self, phone: str, *, user_id: int | None = None) -> list[dict[str, Any]]:
        return self.send(self.contact_update(phone, user_id=user_id))

    def press(self, label_part: str, message: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.send(self.press_update(label_part, message))

    # ------------------------------------------------------------- what arrived

    def messages(self) -> list[dict[str, Any]]:
        return self.api.delivered(self.chat_id)

    def last_with_buttons(self) -> dict[str, Any]:
        for message in reversed(self.messages()):
            if message.get("reply_markup"):
                return message
        raise AssertionError(f"no message with buttons in chat {self.chat_id}: {self.texts()}")

    @staticmethod
    def button(label_part: str, message: dict[str, Any]) -> str:
        for row in message["reply_markup"]["inline_keyboard"]:
            for button in row:
                if label_part in button["text"]:
                    return str(button["callback_data"])
        raise AssertionError(f"no button {label_part!r} in {message.get('reply_markup')}")

    def texts(self) -> list[str]:
        return [str(m.get("text") or m.get("caption") or "") for m in self.messages()]

    def wait_for(self, text: str, *, after: int = 0, timeout: float = 10.0) -> dict[str, Any]:
        """The first message from index `after` on whose text contains `text`."""
        found: dict[str, Any] = {}

        def seen() -> bool:
            for message in self.messages()[after:]:
                if text in str(message.get("text") or message.get("caption") or ""):
                    found.update(message)
                    return True
            return False

        wait_until(seen, timeout, lambda: f"{text!r} not received in chat {self.chat_id}; got {self.texts()[after:]}")
        return found


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
               describe: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(describe() if describe else "condition not met in time")
        time.sleep(0.02)
