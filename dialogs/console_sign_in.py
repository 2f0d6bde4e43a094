"""网页版 — a coordinator or admin asks for a sign-in link to the web console.

    link        (/console, 网页版 → a single-use link and its 6-digit code; nothing to answer)

The link and code work once, for a few minutes (`[console] link_minutes`); asking again spends
the previous one. Who may have one is `storage.console_auth.may_use_console`, the same rule the
console applies at every page, so a volunteer or family member is told no here too.
"""

from __future__ import annotations

from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid


class ConsoleSignIn(Dialog):
    name = "console_sign_in"
    roles = frozenset({"coordinator", "admin"})
    keywords = ("/console", "网页版", "网页", "console")
    states = ["link"]
    transitions: list[dict[str, str]] = []

    async def ask_link(self) -> Finish:
        assert self.ctx.person is not None
        services = self.ctx.services
        issued = await self.ctx.book.console_link(services.console_link_ttl)
        if issued is None:
            return Finish.with_text(self.t("not_allowed"))
        token, code = issued
        await self.ctx.audit("write", "console_sign_in_link", None, None)
        minutes = int(services.console_link_ttl.total_seconds() // 60)
        return Finish.with_text(self.t("link", url=f"{services.console_url}/sign-in/{token}",
                                       code=code, minutes=minutes,
                                       page=f"{services.console_url}/sign-in"))

    async def on_link(self, answer: Answer) -> Invalid:  # never reached: ask_link finishes
        return Invalid(self.t("help"))
