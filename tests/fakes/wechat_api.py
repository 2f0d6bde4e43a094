"""A fake WeChat / WeCom API on 127.0.0.1, for running wechatpy's real clients against.

It serves what Warmline calls under one `/cgi-bin/` root — the Official Account's `token`,
`message/custom/send`, `message/template/send` and `media/upload`, WeCom's `gettoken`, `message/send` and
`user/get` — checks the access token on every call (an expired one gets 42001, an unknown one
40001 / 40014, as WeChat does), records every call, and answers with any error code on demand.
It runs a real threaded HTTP server, so wechatpy's `requests` talk to it over a socket.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

WECOM_PATHS = frozenset({"gettoken", "message/send", "user/get"})
ERRMSG = {
    40001: "invalid credential, access_token is invalid or not latest",
    40014: "invalid access_token",
    42001: "access_token expired",
    43004: "require subscribe",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    40003: "invalid openid",
    40037: "invalid template_id",
    -1: "system error",
}


@dataclass
class Call:
    endpoint: str
    params: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)
    errcode: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class FakeWeChatAPI:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.tokens: dict[str, str] = {}  # token -> "valid" | "expired"
        self.mobiles: dict[str, str] = {}  # WeCom userid -> mobile (user/get)
        self.departed: set[str] = set()  # WeCom users no longer in the app (invaliduser)
        self._faults: dict[str, deque[int]] = defaultdict(deque)
        self._http_faults: dict[str, deque[int]] = defaultdict(deque)
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    # ------------------------------------------------------------------ lifecycle

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/cgi-bin/"

    def start(self) -> FakeWeChatAPI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ steering

    def fail(self, endpoint: str, *errcodes: int) -> None:
        """The next calls to `endpoint` answer these error codes, one each, in order."""
        with self._lock:
            self._faults[endpoint].extend(errcodes)

    def fail_http(self, endpoint: str, *statuses: int) -> None:
        """The next calls answer these HTTP statuses; 200 means an HTML page instead of JSON."""
        with self._lock:
            self._http_faults[endpoint].extend(statuses)

    def expire_tokens(self) -> None:
        """Every token handed out so far is now expired (WeChat answers 42001 to it)."""
        with self._lock:
            for token in self.tokens:
                self.tokens[token] = "expired"

    # ------------------------------------------------------------------ what arrived

    def sent(self, endpoint: str) -> list[Call]:
        """Calls to `endpoint` that WeChat accepted (errcode 0)."""
        return [c for c in self.calls if c.endpoint == endpoint and c.errcode == 0]

    def tried(self, endpoint: str) -> list[Call]:
        return [c for c in self.calls if c.endpoint == endpoint]

    def token_fetches(self) -> int:
        return len([c for c in self.calls if c.endpoint in ("token", "gettoken")])

    # ------------------------------------------------------------------ the API

    def _answer(self, endpoint: str, params: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            call = Call(endpoint, params, body)
            self.calls.append(call)
            if self._http_faults[endpoint]:
                status = self._http_faults[endpoint].popleft()
                call.errcode = -status
                if status == 200:  # a 200 that is not WeChat's JSON, e.g. a proxy's error page
                    return 200, {"_html": "<html><body>gateway says hello</body></html>"}
                return status, {"error": "fake http fault"}
            if endpoint in ("token", "gettoken"):
                return 200, self._issue_token(call)
            token_state = self.tokens.get(params.get("access_token", ""))
            if token_state != "valid":
                code = 42001 if token_state == "expired" else (40014 if endpoint in WECOM_PATHS else 40001)
                call.errcode = code
                return 200, {"errcode": code, "errmsg": ERRMSG[code]}
            if self._faults[endpoint]:
                code = self._faults[endpoint].popleft()
                call.errcode = code
                return 200, {"errcode": code, "errmsg": ERRMSG.get(code, "fake error")}
            if endpoint == "user/get":
                userid = params.get("userid", "")
                if userid not in self.mobiles:
                    call.errcode = 60111
                    return 200, {"errcode": 60111, "errmsg": "userid not found"}
                return 200, {"errcode": 0, "errmsg": "ok", "userid": userid, "mobile": self.mobiles[userid]}
            if endpoint == "message/send":
                if body.get("touser") in self.departed:
                    return 200, {"errcode": 0, "errmsg": "ok", "invaliduser": body["touser"], "msgid": ""}
                return 200, {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": f"wecom-{next(self._ids)}"}
            if endpoint == "message/template/send":
                return 200, {"errcode": 0, "errmsg": "ok", "msgid": next(self._ids)}
            if endpoint == "media/upload":
                return 200, {"type": params.get("type"), "media_id": f"MEDIA-{next(self._ids)}",
                             "created_at": 1795000000}
            if endpoint == "message/custom/send":
                return 200, {"errcode": 0, "errmsg": "ok"}
            call.errcode = 404
            return 404, {"errcode": 404, "errmsg": "no such endpoint in the fake"}

    def _issue_token(self, call: Call) -> dict[str, Any]:
        code = self._faults[call.endpoint].popleft() if self._faults[call.endpoint] else 0
        if code:
            call.errcode = code
            return {"errcode": code, "errmsg": ERRMSG.get(code, "fake error")}
        token = f"TOKEN-{next(self._ids)}"
        self.tokens[token] = "valid"
        return {"access_token": token, "expires_in": 7200}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                endpoint = parts.path.removeprefix("/cgi-bin/").strip("/")
                params = dict(parse_qsl(parts.query))
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                if (self.headers.get("content-type") or "").startswith("multipart/"):
                    body = {"_upload_bytes": len(raw), "_png": b"\x89PNG" in raw}
                else:
                    try:
                        body = json.loads(raw.decode("utf-8")) if raw else {}
                    except ValueError:
                        body = {"_raw": raw.decode("utf-8", "replace")}
                status, answer = fake._answer(endpoint, params, body)
                html = answer.get("_html")
                data = html.encode() if html else json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if html else "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, *args: Any) -> None:
                return None

        return Handler
