"""Signing in with a link or a 6-digit code from chat, and signing out (here or everywhere).

A link opens a page with one button rather than signing in on the GET itself: chat apps fetch
links to draw previews, and a preview must not spend a single-use link. Wrong codes count per
client address and lock it out for a while, the same numbers as wrong invite codes.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.console.web import PRE_COOKIE, SESSION_COOKIE, Console, Page
from storage.audit import record_audit
from storage.console_auth import (
    code_locked,
    end_all_sessions,
    end_session,
    open_session,
    peek_link,
    redeem_code,
    redeem_link,
)
from storage.models import Person


def _next(value: object) -> str:
    """Only a path inside the console, never another site."""
    text = value if isinstance(value, str) else ""
    return text if text.startswith("/console/") and not text.startswith("/console//") else "/console/"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class SignIn:
    def __init__(self, console: Console) -> None:
        self.c = console

    def _form(self, request: Request, template: str, status_code: int = 200, **values: object) -> Response:
        binding, fresh = self.c.pre_binding(request)
        response = self.c.render(request, template, status_code=status_code, page=None,
                                 csrf=self.c.csrf_token(binding), **values)
        if fresh:
            self.c.set_cookie(response, request, PRE_COOKIE, binding, None)
        return response

    async def _checked_form(self, request: Request) -> tuple[dict[str, str], bool]:
        form = await self.c.read_form(request)
        binding = self.c.unsign(request.cookies.get(PRE_COOKIE))
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        return values, self.c.csrf_ok(form, binding)

    async def _signed_in(self, request: Request, session: AsyncSession, person: Person, how: str,
                         target: str) -> Response:
        now = self.c.app.services.now()
        secret = await open_session(session, person, now, self.c.config.session_ttl)
        await record_audit(session, actor_id=person.id, action="write", entity="console_session",
                           entity_id=None, household_id=None, detail=how, at=now)
        response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
        self.c.set_cookie(response, request, SESSION_COOKIE, secret,
                          int(self.c.config.session_ttl.total_seconds()))
        return response

    # /console/sign-in : the code form
    async def code_page(self, request: Request) -> Response:
        if request.method == "GET":
            return self._form(request, "sign_in.html", next=_next(request.query_params.get("next")))
        values, ok = await self._checked_form(request)
        target = _next(values.get("next"))
        if not ok:
            return self._form(request, "sign_in.html", status_code=403, error="csrf_text", next=target)
        services = self.c.app.services
        now, client = services.now(), _client(request)
        async with self.c.app.db.async_session() as session:
            if await code_locked(session, client, now, max_failures=services.invite_max_failures,
                                 window=services.invite_failure_window):
                return self._form(request, "sign_in.html", status_code=429, error="locked", next=target)
            person = await redeem_code(session, values.get("code", ""), client, now)
            if person is not None:
                return await self._signed_in(request, session, person, "code", target)
        return self._form(request, "sign_in.html", status_code=400, error="bad_code", next=target)

    # /console/sign-in/{token} : the link from chat
    async def link_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        now = self.c.app.services.now()
        if request.method == "GET":
            async with self.c.app.db.async_session() as session:
                usable = await peek_link(session, token, now)
            return self._form(request, "sign_in_link.html", status_code=200 if usable else 410,
                              usable=usable, token=token)
        _values, ok = await self._checked_form(request)
        if not ok:
            return self._form(request, "sign_in_link.html", status_code=403, usable=True, token=token,
                              error="csrf_text")
        async with self.c.app.db.async_session() as session:
            person = await redeem_link(session, token, now)
            if person is not None:
                return await self._signed_in(request, session, person, "link", "/console/")
        return self._form(request, "sign_in_link.html", status_code=410, usable=False, token=token)

    # /console/sign-out and /console/sign-out-everywhere (POST, behind the guard)
    async def sign_out(self, page: Page) -> Response:
        await end_session(page.session, page.secret, page.now())
        await page.audit("write", "console_session", None, None, "sign_out")
        return self._bye(page.request, "signed_out_one")

    async def sign_out_everywhere(self, page: Page) -> Response:
        n = await end_all_sessions(page.session, page.person.id, page.now())
        await page.audit("write", "console_session", None, None, f"sign_out_everywhere:{n}")
        return self._bye(page.request, "signed_out_all")

    def _bye(self, request: Request, text: str) -> Response:
        response = self.c.render(request, "message.html", page=None, title="signed_out", text=text,
                                 link=True)
        self.c.clear_cookie(response, request)
        return response
