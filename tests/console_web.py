"""Helpers for the web console's tests: an HTTP client on the real ASGI app, and signing in the
way a coordinator does — by asking for a link in chat."""

from __future__ import annotations

import re

import httpx

from bot.app import App
from bot.console import console_routes
from bot.http import build_http_app
from tests.chat import Chat

LINK = re.compile(r"/console/sign-in/([A-Za-z0-9_\-]{20,})")
CODE = re.compile(r"(?:验证码|code)[:：]\s*(\d{6})")
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def client(app: App, base_url: str = "http://testserver") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_http_app(console_routes(app)))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


async def link_from_chat(chat: Chat) -> tuple[str, str]:
    """Send 网页版 in chat; returns the link's token and the 6-digit code from the reply."""
    text = await chat.say("网页版")
    link, code = LINK.search(text), CODE.search(text)
    assert link and code, f"no sign-in link in the reply: {text!r}"
    return link.group(1), code.group(1)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(web: httpx.AsyncClient, chat: Chat) -> httpx.Response:
    token, _code = await link_from_chat(chat)
    page = await web.get(f"/console/sign-in/{token}")
    assert page.status_code == 200, page.text
    response = await web.post(f"/console/sign-in/{token}", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 303, response.text
    return response


async def post(web: httpx.AsyncClient, path: str, data: dict[str, str] | None = None,
               *, form_page: str = "/console/", **kwargs: object) -> httpx.Response:
    """POST a console form with the CSRF token of a page this browser just opened."""
    page = await web.get(form_page)
    return await web.post(path, data={"csrf": csrf_of(page.text), **(data or {})}, **kwargs)  # type: ignore[arg-type]
