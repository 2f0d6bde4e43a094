"""Driving dialogs: start one, feed it an answer, ask its next question, or offer the menu.

The driver knows the dialogs only through what each declares (name, roles, keywords, events,
`for_newcomers`, `catches_free_text`, `in_menu`), never by name. A dialog instance lives for
one step: it is attached to its class's state machine, run, and detached; what survives the
step is written to the session row (`dialogs.engine.sessions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dialogs.engine import sessions
from dialogs.engine.context import StepContext
from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid, Stay, action_value
from dialogs.engine.sessions import SessionRow
from dialogs.engine.types import Option, Reply
from dialogs.services import Services
from storage.models import Person

NEWCOMER = "newcomer"
MAX_AUTO_STEPS = 20


class Driver:
    """The dialogs of one app, and how a step moves through them."""

    def __init__(self, dialogs: Sequence[type[Dialog]], services: Services) -> None:
        self.dialogs = {d.name: d for d in dialogs}
        self.services = services
        # where someone the bot does not know yet is taken (a code, a shared contact, any words)
        self.welcome = next((d for d in dialogs if d.for_newcomers), None)

    # ------------------------------------------------------------- who may do what

    def allowed(self, cls: type[Dialog], person: Person | None) -> bool:
        role = person.role if person is not None else NEWCOMER
        return role in cls.roles

    def title(self, ctx: StepContext, name: str) -> str:
        return ctx.t(f"{name}.title") if name in self.dialogs else name

    def for_event(self, event: str, person: Person | None) -> type[Dialog] | None:
        for cls in self.dialogs.values():
            if event in cls.events and self.allowed(cls, person):
                return cls
        return None

    def global_keyword(self, word: str, person: Person | None) -> type[Dialog] | None:
        """A dialog that starts from anywhere on this word (e.g. 退订), even mid-dialog."""
        for cls in self.dialogs.values():
            if word in cls.global_keywords and self.allowed(cls, person):
                return cls
        return None

    def newcomer_action(self, **args: Any) -> str | None:
        """The option value that starts the newcomers' dialog with these arguments."""
        return action_value(self.welcome.name, **args) if self.welcome is not None else None

    def contact_answers(self, row: SessionRow) -> bool:
        """The session waits where sharing one's phone number is an answer."""
        cls = self.dialogs.get(row.dialog or "")
        return cls is not None and row.state in cls.contact_states

    # ----------------------------------------------------------------- driving

    async def start(self, ctx: StepContext, row: SessionRow, action: dict[str, Any]) -> list[Reply]:
        cls = self.dialogs.get(str(action.get("start")))
        sessions.clear(row)
        if cls is None or not self.allowed(cls, ctx.person):
            return [Reply(ctx.t("engine.not_allowed")), *await self.menu(ctx, row)]
        dialog = cls(ctx, {})
        dialog.state = cls.states[0]
        await dialog.begin(action)
        return await self.ask(ctx, row, cls, dialog, prefix=[])

    async def proceed(self, ctx: StepContext, row: SessionRow, answer: Answer) -> list[Reply]:
        """Feed the answer to the dialog the session waits in."""
        cls = self.dialogs[row.dialog or ""]
        if not self.allowed(cls, ctx.person):
            sessions.clear(row)
            return [Reply(ctx.t("engine.not_allowed")), *await self.menu(ctx, row)]
        dialog = cls(ctx, sessions.dialog_data(row))
        dialog.state = row.state or cls.states[0]
        result = await dialog.handle(answer)
        if isinstance(result, Invalid):
            return await self.ask(ctx, row, cls, dialog, prefix=[Reply(result.message)])
        if isinstance(result, Stay):
            self._keep(ctx, row, cls, dialog, result.reply)
            return [result.reply]
        if isinstance(result, Finish):
            return await self._finish(ctx, row, result, prefix=[])
        return await self.ask(ctx, row, cls, dialog, prefix=[], fire=result)

    async def ask(self, ctx: StepContext, row: SessionRow, cls: type[Dialog], dialog: Dialog,
                  *, prefix: list[Reply], fire: str | None = None) -> list[Reply]:
        """Fire `fire`, then ask; states that are already answered skip themselves."""
        trigger = fire
        for _ in range(MAX_AUTO_STEPS):
            if trigger is not None:
                dialog.trigger(trigger)
            question = await dialog.ask()
            if isinstance(question, str):
                trigger = question
                continue
            if isinstance(question, Finish):
                return await self._finish(ctx, row, question, prefix=prefix)
            self._keep(ctx, row, cls, dialog, question)
            if prefix:  # why the answer did not fit, right above the question asked again
                return [Reply("\n".join([*(p.text for p in prefix), question.text]),
                              question.options, question.attachment)]
            return [question]
        raise RuntimeError(f"dialog {cls.name} skipped too many states")

    async def _finish(self, ctx: StepContext, row: SessionRow, finish: Finish, *,
                      prefix: list[Reply]) -> list[Reply]:
        sessions.clear(row)
        if finish.then:  # hand over to the next dialog (roles checked in start)
            return prefix + list(finish.replies) + await self.start(ctx, row, finish.then)
        return prefix + list(finish.replies) + await self.menu(ctx, row, quiet=True)

    def _keep(self, ctx: StepContext, row: SessionRow, cls: type[Dialog], dialog: Dialog,
              question: Reply) -> None:
        sessions.keep(row, cls.name, dialog.state, dialog.data, question,
                      ctx.now() + (cls.idle_timeout or self.services.idle_timeout))

    # ------------------------------------------------------ outside any dialog

    async def menu(self, ctx: StepContext, row: SessionRow, *, quiet: bool = False) -> list[Reply]:
        """The main menu for the sender's role; a newcomer is taken to the newcomers' dialog."""
        if ctx.person is None:
            if self.welcome is not None and not quiet:
                return await self.start(ctx, row, {"start": self.welcome.name})
            return []
        options = tuple(
            Option(ctx.t(f"{cls.name}.title"), action_value(cls.name))
            for cls in self.dialogs.values() if cls.in_menu and self.allowed(cls, ctx.person)
        )
        if not options:
            return [] if quiet else [Reply(ctx.t("engine.no_menu"))]
        key = "engine.menu_quiet" if quiet else "engine.menu"
        if ctx.person.role == "family":  # parents are addressed with 您
            key += "_family"
        reply = Reply(ctx.t(key, name=ctx.person.name), options)
        sessions.offer(row, reply)
        return [reply]

    async def reshow(self, ctx: StepContext, row: SessionRow) -> list[Reply]:
        """The question the session waits on again, or the menu."""
        question = sessions.waiting_question(row)
        return [question] if question is not None else await self.menu(ctx, row)

    def help(self, ctx: StepContext, row: SessionRow) -> str:
        if row.dialog and row.dialog in self.dialogs:
            cls = self.dialogs[row.dialog]
            dialog = cls(ctx, dict(row.data or {}))
            dialog.state = row.state or cls.states[0]
            return dialog.help_text()
        return ctx.t("engine.help")

    async def unrouted(self, ctx: StepContext, row: SessionRow, text: str,
                       raw: str = "") -> list[Reply]:
        """Text outside any dialog: a keyword that starts one, else the menu."""
        lowered = text.lower()
        matched = [cls for cls in self.dialogs.values() if lowered in cls.keywords]
        for cls in matched:
            if self.allowed(cls, ctx.person):
                return await self.start(ctx, row, {"start": cls.name, "text": text})
        if ctx.person is None and self.welcome is not None:
            start: dict[str, Any] = {"start": self.welcome.name}
            return await self.start(ctx, row, {**start, "code": text} if text else start)
        fallback = [cls for cls in self.dialogs.values()
                    if cls.catches_free_text and self.allowed(cls, ctx.person)]
        if fallback and text:
            # the words as typed ("raw") too: a family's message is kept exactly as written
            return await self.start(ctx, row, {"start": fallback[0].name, "text": text, "raw": raw})
        if matched:  # a keyword of a dialog this role may not use: say so, kindly
            return [Reply(ctx.t("engine.not_allowed")), *await self.menu(ctx, row)]
        return [Reply(ctx.t("engine.not_understood")), *await self.menu(ctx, row)]
