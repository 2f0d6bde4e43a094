"""The console's plumbing: templates, signed cookies, CSRF, and the one guard every page passes.

`Console.page` wraps a page handler: it reads the signed session cookie, loads the person
through `storage.console_auth` (coordinators and admins only — the rule is written there),
checks the CSRF token of every POST, opens one unit of work for the request, and hands the
handler a `Page`. Scope (which households a person sees) is `storage.scope`, reached through
`Page.household`; no page writes its own version of either rule.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bot.app import App
from bot.console.config import ConsoleConfig
from bot.console.text import both, chat_both, t
from dialogs.engine.context import StepContext
from storage.audit import record_audit
from storage.console_auth import session_person
from storage.models import Household, Person, Township
from storage.scope import visible_households

HERE = Path(__file__).parent
SESSION_COOKIE = "wl_console"
PRE_COOKIE = "wl_pre"  # binds the CSRF token of the sign-in forms, before there is a session
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the sign-in link's token must not leak to other sites
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "frame-ancestors 'none'; form-action 'self'",
}
WEB = "web"  # the channel name of the console's chat-step contexts
NAV = ("today", "households", "imports", "activities", "reports", "delivery", "audit", "settings")


@dataclass
class Page:
    """One request of a signed-in person: the unit of work, who they are, and the form sent."""

    request: Request
    session: AsyncSession
    person: Person
    console: Console
    secret: str
    form: FormData | None = None
    township_name: str = ""
    notices: list[str] = field(default_factory=list)

    def now(self) -> datetime:
        return self.console.app.services.now()

    @property
    def is_admin(self) -> bool:
        return self.person.role == "admin"

    async def audit(self, action: str, entity: str, entity_id: int | None,
                    household_id: int | None, detail: str | None = None) -> None:
        await record_audit(self.session, actor_id=self.person.id, action=action, entity=entity,
                           entity_id=entity_id, household_id=household_id, detail=detail,
                           at=self.now())

    async def household(self, code: str) -> Household | None:
        """The household with this 户编号 if this person may see it (storage.scope), else None."""
        return await self.session.scalar(visible_households(self.person).where(Household.code == code))

    def step_context(self) -> StepContext:
        """A chat step's context for this person, so the chat's own code (cards, activities)
        runs unchanged on the web; its audit rows carry the person, like in chat."""
        return StepContext(session=self.session, services=self.console.app.services, channel=WEB,
                           address=str(self.person.id), person=self.person)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else default

    def render(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        return self.console.render(self.request, template, status_code=status_code, page=self,
                                   csrf=self.console.csrf_token(self.secret), **values)


Handler = Callable[[Page], Awaitable[Response]]


class Console:
    def __init__(self, app: App) -> None:
        self.app = app
        self.config = ConsoleConfig.from_settings(app.settings, app.services.console_url)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(["html"]), trim_blocks=True,
                               lstrip_blocks=True)
        self.env.globals.update(both=both, chat_both=chat_both, t=t, nav=NAV, prefix=self.prefix)
        self.env.filters["local"] = self.local_text

    # ------------------------------------------------------------ helpers
    @property
    def prefix(self) -> str:
        return "/console"

    def local_text(self, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return value.astimezone(self.app.settings.timezone).strftime(fmt) if value else ""

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.config.key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def sign(self, value: str) -> str:
        return f"{value}.{self._mac('cookie', value)}"

    def unsign(self, cookie: str | None) -> str:
        value, _, mac = (cookie or "").rpartition(".")
        return value if value and hmac.compare_digest(mac, self._mac("cookie", value)) else ""

    def csrf_token(self, binding: str) -> str:
        return self._mac("csrf", binding)

    def csrf_ok(self, form: FormData, binding: str) -> bool:
        sent = form.get("csrf")
        return bool(binding) and isinstance(sent, str) and hmac.compare_digest(sent, self.csrf_token(binding))

    def secure(self, request: Request) -> bool:
        if self.config.secure_cookies in {"true", "yes", "1"}:
            return True
        if self.config.secure_cookies in {"false", "no", "0"}:
            return False
        return request.url.scheme == "https" or self.config.public_url.startswith("https://")

    def set_cookie(self, response: Response, request: Request, name: str, value: str,
                   max_age: int | None) -> None:
        response.set_cookie(name, self.sign(value), max_age=max_age, path=self.prefix, httponly=True,
                            samesite=self.config.same_site, secure=self.secure(request))  # type: ignore[arg-type]

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(SESSION_COOKIE, path=self.prefix, httponly=True,
                               samesite=self.config.same_site, secure=self.secure(request))  # type: ignore[arg-type]

    def render(self, request: Request, template: str, *, status_code: int = 200,
               **values: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(request=request, **values)
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)

    def pre_binding(self, request: Request) -> tuple[str, bool]:
        """The browser's pre-session value for sign-in CSRF tokens (new: set it on the response)."""
        existing = self.unsign(request.cookies.get(PRE_COOKIE))
        return (existing, False) if existing else (secrets.token_urlsafe(16), True)

    def to_sign_in(self, request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{self.prefix}/sign-in?next={quote(target)}", status_code=303,
                                headers={"Cache-Control": "no-store"})

    async def read_form(self, request: Request) -> FormData:
        return await request.form(max_files=2, max_fields=200,
                                  max_part_size=self.config.max_upload_bytes * 2)  # base64 of a file

    # ------------------------------------------------------------ the guard
    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            secret = self.unsign(request.cookies.get(SESSION_COOKIE))
            async with self.app.db.async_session() as session:
                person = await session_person(session, secret, self.app.services.now()) if secret else None
                if person is None:
                    if request.method == "GET":
                        return self.to_sign_in(request)
                    return self.render(request, "message.html", status_code=403, page=None,
                                       title="signed_out", text="signed_out_text")
                form = None
                if request.method == "POST":
                    form = await self.read_form(request)
                    if not self.csrf_ok(form, secret):
                        return self.render(request, "message.html", status_code=403, page=None,
                                           title="csrf", text="csrf_text")
                township = ""
                if person.township_id is not None:
                    township = await session.scalar(
                        select(Township.name).where(Township.id == person.township_id)) or ""
                page = Page(request, session, person, self, secret, form, township)
                return await handler(page)
        return endpoint
