"""The conversation runner: one inbound message in, one transaction, replies out.

For each message it loads the sender and their session, handles the global words (cancel,
help, menu), checks the sender's role against the dialog, feeds the answer to the dialog,
saves the new state and writes every reply to the outbox — all in one unit of work. If any of
that fails, nothing of it is kept and the sender is asked kindly to try again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from time import monotonic
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine import catalog
from dialogs.engine.context import StepContext, new_token, payload_of, route_waiting
from dialogs.engine.dialog import Answer, Dialog, Finish, Invalid, Stay, action_value, parse_action
from dialogs.engine.flood import FloodGuard
from dialogs.engine.types import Inbound, Option, Outgoing, Reply
from dialogs.parsing import normalize
from dialogs.services import Services
from storage.db import Database
from storage.models import (
    ActionToken,
    ChannelAddress,
    DialogSession,
    OutboxMessage,
    OutboxStatus,
    Person,
    ProcessedInbound,
)

log = logging.getLogger("warmline.runner")

CANCEL_WORDS = frozenset({"取消", "/cancel", "cancel", "退出", "算了"})
HELP_WORDS = frozenset({"帮助", "/help", "help", "?", "？", "怎么用"})
MENU_WORDS = frozenset({"菜单", "/menu", "menu", "/start", "主菜单", "开始"})
NEWCOMER = "newcomer"
MAX_AUTO_STEPS = 20


@dataclass
class StepOutcome:
    replies: list[Reply]
    session: DialogSession
    person: Person | None = None  # the sender after the step (registration links one)
    newcomer: bool = False  # the sender was unknown before the step


@dataclass(frozen=True)
class Handled:
    """What one inbound message led to, for the channel that delivers it.

    `outgoing` are the committed replies to send now (one message per step where possible).
    The flags let a channel dress them without asking the database again: Telegram offers a
    newcomer the share-contact keyboard while `wants_contact`, and removes it once `registered`.
    """

    outgoing: list[Outgoing]
    newcomer: bool = False  # the sender was not registered before this step
    registered: bool = False  # the sender is registered after it
    wants_contact: bool = False  # the session waits where a shared phone number answers


def merge_replies(replies: Sequence[Reply]) -> list[Reply]:
    """A step's replies as the fewest messages: texts joined by a blank line.

    A reply with options ends its message (the buttons go under the last words), and one with
    an attachment travels alone (a caption has its own limit). Splitting a text longer than a
    platform allows is the channel sender's job (Telegram: 4096 characters, buttons on the last
    part). One message per step saves the platform's per-chat budget and keeps a fast answer
    from racing the rest of the reply.
    """
    merged: list[Reply] = []
    texts: list[str] = []
    for reply in replies:
        if reply.attachment is not None:
            if texts:
                merged.append(Reply("\n\n".join(texts)))
                texts = []
            merged.append(reply)
            continue
        if reply.text:
            texts.append(reply.text)
        if reply.options:
            merged.append(Reply("\n\n".join(texts), reply.options))
            texts = []
    if texts:
        merged.append(Reply("\n\n".join(texts)))
    return merged


class Runner:
    """Feeds inbound messages to dialogs; every call is one durable step."""

    def __init__(self, db: Database, services: Services, dialogs: Sequence[type[Dialog]],
                 flood: FloodGuard | None = None) -> None:
        self.db = db
        self.services = services
        self.dialogs = {d.name: d for d in dialogs}
        # where someone the bot does not know yet is taken (a code, a shared contact, any words)
        self.welcome = next((d for d in dialogs if d.for_newcomers), None)
        self.flood = flood or FloodGuard()

    # ----------------------------------------------------------------- public

    async def handle(self, inbound: Inbound) -> list[Outgoing]:
        """Process one inbound message; returns the committed replies to deliver now."""
        return (await self.handle_step(inbound)).outgoing

    async def handle_step(self, inbound: Inbound) -> Handled:
        """Process one inbound message: one transaction, its replies queued in the outbox."""
        key = (inbound.channel, inbound.address)
        instant = monotonic()
        if not self.flood.admit(key, instant):
            log.warning("flood: message dropped channel=%s", inbound.channel)
            if self.flood.should_warn(key, instant):
                return Handled([Outgoing(0, inbound.channel, inbound.address,
                                         payload_of(Reply(catalog.t("engine.slow_down"))))])
            return Handled([])
        try:
            async with self.db.async_session() as session:
                if not await self._first_time(session, inbound):
                    return Handled([])
                outcome = await self._step(session, inbound)
                outgoing = await self._queue_replies(session, inbound, outcome)
                row = outcome.session
                cls = self.dialogs.get(row.dialog or "")
                return Handled(outgoing, newcomer=outcome.newcomer,
                               registered=outcome.person is not None,
                               wants_contact=cls is not None and row.state in cls.contact_states)
        except IntegrityError:
            # A concurrent copy of the same platform message won the race; it was handled there.
            if inbound.message_id:
                log.info("duplicate inbound dropped channel=%s", inbound.channel)
                return Handled([])
            log.error("step failed: integrity error channel=%s", inbound.channel)
        except Exception as exc:  # one step = one transaction; report without personal data
            log.error("step failed channel=%s error=%s", inbound.channel, type(exc).__name__,
                      exc_info=log.isEnabledFor(logging.DEBUG))
        return Handled(await self._apologise(inbound))

    async def pending_prompt(self, channel: str, address: str) -> Reply | None:
        """The question a session is waiting on, to show first when someone comes back."""
        async with self.db.async_session() as session:
            row = await self._load_session(session, channel, address, lock=False)
            if row is None or not row.dialog or not row.prompt:
                return None
            if row.expires_at is not None and row.expires_at <= self.services.now():
                return None
            prompt = row.prompt
            return Reply(prompt["text"], tuple(Option(o["label"], o["token"]) for o in prompt["options"]))

    async def link_phone(self, channel: str, address: str, phone: str,
                         display_name: str | None = None) -> Person | None:
        """Bind an address to the known person with this phone number (console, shared contact)."""
        digits = "".join(ch for ch in normalize(phone) if ch.isdigit())
        if not digits:
            return None
        async with self.db.async_session() as session:
            person = await session.scalar(select(Person).where(Person.phone == digits))
            if person is None or not person.active:
                return None
            existing = await session.scalar(select(ChannelAddress).where(
                ChannelAddress.channel == channel, ChannelAddress.address == address))
            if existing is None:
                session.add(ChannelAddress(person_id=person.id, channel=channel, address=address,
                                           display_name=display_name, created_at=self.services.now()))
                await route_waiting(session, person.id, channel, address)
            elif existing.person_id != person.id:
                return None
            return person

    async def mark_sent(self, outbox_ids: Sequence[int], platform_ids: Sequence[str | None] | None = None,
                        ) -> None:
        """Record fast-path deliveries as sent."""
        if not outbox_ids:
            return
        now = self.services.now()
        async with self.db.async_session() as session:
            rows = await session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(outbox_ids)))
            ids = {row.id: row for row in rows}
            for i, oid in enumerate(outbox_ids):
                row = ids.get(oid)
                if row is None:
                    continue
                row.status = OutboxStatus.SENT
                row.sent_at = now
                row.attempts += 1
                row.claimed_by = None
                if platform_ids and platform_ids[i]:
                    row.platform_message_id = platform_ids[i]

    # ---------------------------------------------------------------- the step

    async def _first_time(self, session: AsyncSession, inbound: Inbound) -> bool:
        """Claim the platform message id; a copy already processed fails on the primary key.

        No SELECT first, and no flush of its own: the row is written with the step's other
        changes, and a repeat's IntegrityError rolls the whole step back in `handle`, exactly
        as for a concurrent copy. (Measured in benchmarks/dialog_throughput.py: a query and a
        flush saved on every step.)
        """
        if not inbound.message_id:
            return True
        session.add(ProcessedInbound(channel=inbound.channel, inbound_key=inbound.message_id,
                                     processed_at=self.services.now()))
        return True

    async def _load_session(self, session: AsyncSession, channel: str, address: str,
                            *, lock: bool) -> DialogSession | None:
        query = select(DialogSession).where(DialogSession.channel == channel,
                                            DialogSession.address == address)
        if lock and session.bind is not None and session.bind.dialect.name != "sqlite":
            query = query.with_for_update()
        return await session.scalar(query)

    async def _sender(self, session: AsyncSession, inbound: Inbound) -> Person | None:
        row = await session.execute(
            select(ChannelAddress, Person).join(Person, Person.id == ChannelAddress.person_id)
            .where(ChannelAddress.channel == inbound.channel, ChannelAddress.address == inbound.address)
        )
        found = row.first()
        if found is None:
            return None
        address, person = found
        address.last_inbound_at = self.services.now()
        if inbound.display_name and not address.display_name:
            address.display_name = inbound.display_name[:100]
        return person if person.active else None

    async def _step(self, session: AsyncSession, inbound: Inbound) -> StepOutcome:
        now = self.services.now()
        with session.no_autoflush:  # the sender's last_inbound_at is written with the step's flush
            person = await self._sender(session, inbound)
            row = await self._load_session(session, inbound.channel, inbound.address, lock=True)
        if row is None:
            row = DialogSession(channel=inbound.channel, address=inbound.address, data={},
                                version=0, updated_at=now)
            session.add(row)
        row.person_id = person.id if person else None
        ctx = StepContext(session=session, services=self.services, channel=inbound.channel,
                          address=inbound.address, person=person,
                          locale=(person.locale if person else catalog.DEFAULT_LOCALE))
        replies = await self._route(ctx, row, inbound)
        return StepOutcome(replies, row, person=ctx.person, newcomer=person is None)

    async def _route(self, ctx: StepContext, row: DialogSession, inbound: Inbound) -> list[Reply]:
        """Interpret the input and drive the dialog it belongs to; the replies, in order."""
        session, person, now = ctx.session, ctx.person, ctx.now()
        replies: list[Reply] = []

        if row.dialog and row.expires_at is not None and row.expires_at <= now:
            title = self._title(ctx, row.dialog)
            self._clear(row)
            replies.append(Reply(ctx.t("engine.timed_out", dialog=title)))

        text = normalize(inbound.text)
        word = text.lower()
        answer_value: str | None = None

        if inbound.option_token:
            answer_value = await self._resolve_token(session, row, inbound)
            if answer_value is None:
                replies.append(Reply(ctx.t("engine.stale_button")))
                replies.extend(await self._reshow(ctx, row))
                return replies
        elif inbound.event and (cls := self._for_event(inbound.event, person)) is not None:
            scene = {"code": inbound.start_payload} if inbound.start_payload else {}  # a QR's code
            answer_value = action_value(cls.name, event=inbound.event, **scene)
        elif inbound.event and not inbound.start_payload:
            return []  # an event nobody handles needs no reply
        elif (interrupt := self._global_keyword(word, person)) is not None:
            if row.dialog and row.dialog != interrupt.name:
                replies.append(Reply(ctx.t("engine.left_unsaved", dialog=self._title(ctx, row.dialog))))
            answer_value = action_value(interrupt.name, text=text)
        elif inbound.start_payload and self.welcome is not None:
            answer_value = action_value(self.welcome.name, code=inbound.start_payload)
        elif inbound.contact_phone and person is None and self.welcome is not None:
            answer_value = action_value(self.welcome.name, phone=inbound.contact_phone)
        elif word in CANCEL_WORDS:
            had = row.dialog
            self._clear(row)
            replies.append(Reply(ctx.t("engine.cancelled" if had else "engine.nothing_to_cancel")))
            replies.extend(await self._menu(ctx, row))
            return replies
        elif word in HELP_WORDS:
            replies.append(Reply(await self._help(ctx, row)))
            replies.extend(await self._reshow(ctx, row))
            return replies
        elif word in MENU_WORDS:
            if row.dialog:
                replies.append(Reply(ctx.t("engine.left_unsaved", dialog=self._title(ctx, row.dialog))))
            self._clear(row)
            replies.extend(await self._menu(ctx, row))
            return replies
        else:
            # outside a dialog, a message pushed since the last step is what a number answers
            if not row.dialog:
                answer_value = await self._match_pushed(session, row, inbound, text)
            answer_value = answer_value or self._match_option(row, text)

        action = parse_action(answer_value) if answer_value else None
        if action is not None and "start" in action:
            replies.extend(await self._start(ctx, row, action))
        elif row.dialog and row.dialog in self.dialogs:
            replies.extend(await self._continue(ctx, row, Answer(text, answer_value, inbound.text)))
        else:
            replies.extend(await self._unrouted(ctx, row, text, inbound.text))
        return replies

    # -------------------------------------------------------------- dialogs

    def _title(self, ctx: StepContext, name: str) -> str:
        return ctx.t(f"{name}.title") if name in self.dialogs else name

    def _for_event(self, event: str, person: Person | None) -> type[Dialog] | None:
        for cls in self.dialogs.values():
            if event in cls.events and self._allowed(cls, person):
                return cls
        return None

    def _global_keyword(self, word: str, person: Person | None) -> type[Dialog] | None:
        for cls in self.dialogs.values():
            if word in cls.global_keywords and self._allowed(cls, person):
                return cls
        return None

    def _allowed(self, cls: type[Dialog], person: Person | None) -> bool:
        role = person.role if person is not None else NEWCOMER
        return role in cls.roles

    async def _start(self, ctx: StepContext, row: DialogSession, action: dict[str, Any]) -> list[Reply]:
        cls = self.dialogs.get(str(action.get("start")))
        if cls is None or not self._allowed(cls, ctx.person):
            self._clear(row)
            return [Reply(ctx.t("engine.not_allowed")), *await self._menu(ctx, row)]
        self._clear(row)
        dialog = cls(ctx, {})
        cls.machine().add_model(dialog, initial=cls.states[0])
        try:
            await dialog.begin(action)
            return await self._ask(ctx, row, cls, dialog, prefix=[])
        finally:
            cls.machine().remove_model(dialog)

    async def _continue(self, ctx: StepContext, row: DialogSession, answer: Answer) -> list[Reply]:
        cls = self.dialogs[row.dialog or ""]
        if not self._allowed(cls, ctx.person):
            self._clear(row)
            return [Reply(ctx.t("engine.not_allowed")), *await self._menu(ctx, row)]
        data = {k: v for k, v in (row.data or {}).items() if not k.startswith("_")}
        dialog = cls(ctx, data)
        cls.machine().add_model(dialog, initial=row.state or cls.states[0])
        try:
            result = await dialog.handle(answer)
            if isinstance(result, Invalid):
                return await self._ask(ctx, row, cls, dialog, prefix=[Reply(result.message)], fire=None)
            if isinstance(result, Stay):
                self._keep(ctx, row, cls, dialog, result.reply)
                return [result.reply]
            if isinstance(result, Finish):
                self._clear(row)
                if result.then:  # hand over to the next dialog (roles checked in _start)
                    return list(result.replies) + await self._start(ctx, row, result.then)
                return list(result.replies) + (await self._menu(ctx, row, quiet=True))
            return await self._ask(ctx, row, cls, dialog, prefix=[], fire=result)
        finally:
            cls.machine().remove_model(dialog)

    async def _ask(self, ctx: StepContext, row: DialogSession, cls: type[Dialog], dialog: Dialog,
                   *, prefix: list[Reply], fire: str | None = None) -> list[Reply]:
        """Fire `fire`, then ask; states that are already answered skip themselves."""
        trigger = fire
        for _ in range(MAX_AUTO_STEPS):
            if trigger is not None:
                dialog.trigger(trigger)  # type: ignore[attr-defined]
            question = await dialog.ask()
            if isinstance(question, str):
                trigger = question
                continue
            if isinstance(question, Finish):
                self._clear(row)
                if question.then:
                    return prefix + list(question.replies) + await self._start(ctx, row, question.then)
                return prefix + list(question.replies) + (await self._menu(ctx, row, quiet=True))
            self._keep(ctx, row, cls, dialog, question)
            if prefix:
                return [Reply("\n".join([*(p.text for p in prefix), question.text]),
                              question.options, question.attachment)]
            return [question]
        raise RuntimeError(f"dialog {cls.name} skipped too many states")

    def _keep(self, ctx: StepContext, row: DialogSession, cls: type[Dialog], dialog: Dialog,
              question: Reply) -> None:
        row.dialog = cls.name
        row.state = dialog.state
        row.data = {**dialog.data, **self._options_data(question)}
        row.prompt = self._prompt(question, row.data)
        row.expires_at = ctx.now() + (cls.idle_timeout or self.services.idle_timeout)

    def _options_data(self, question: Reply) -> dict[str, Any]:
        return {"_opts": [[new_token(), opt.value, opt.label] for opt in question.options]}

    def _prompt(self, question: Reply, data: dict[str, Any]) -> dict[str, Any]:
        return {"text": question.text,
                "options": [{"label": label, "token": token} for token, _v, label in data.get("_opts", [])]}

    def _clear(self, row: DialogSession) -> None:
        row.dialog = None
        row.state = None
        row.data = {}
        row.prompt = None
        row.expires_at = None

    async def _reshow(self, ctx: StepContext, row: DialogSession) -> list[Reply]:
        if row.dialog and row.prompt:
            return [Reply(row.prompt["text"], tuple(
                Option(o["label"], v) for o, (_t, v, _l) in zip(row.prompt["options"], row.data.get("_opts", []), strict=False)))]
        return await self._menu(ctx, row)

    async def _help(self, ctx: StepContext, row: DialogSession) -> str:
        if row.dialog and row.dialog in self.dialogs:
            cls = self.dialogs[row.dialog]
            dialog = cls(ctx, dict(row.data or {}))
            dialog.state = row.state or cls.states[0]
            return dialog.help_text()
        return ctx.t("engine.help")

    def _match_option(self, row: DialogSession, text: str) -> str | None:
        options = (row.data or {}).get("_opts") or []
        if not options or not text:
            return None
        if text.isdigit():
            index = int(text) - 1
            return options[index][1] if 0 <= index < len(options) else None
        lowered = text.lower()
        labels: list[tuple[str, str]] = [(normalize(label).lower(), value) for _token, value, label in options]
        for label, value in labels:
            if lowered == label:
                return value
        starts = [value for label, value in labels if len(lowered) >= 2 and label.startswith(lowered)]
        return starts[0] if len(starts) == 1 else None

    async def _match_pushed(self, session: AsyncSession, row: DialogSession, inbound: Inbound,
                            text: str) -> str | None:
        """A number typed in answer to the latest pushed message (a digest, an invitation).

        Channels without buttons show those options numbered too; the number refers to the
        newest such message delivered since the person's last step.
        """
        if not text.isdigit():
            return None
        query = (select(OutboxMessage).where(
            OutboxMessage.channel == inbound.channel, OutboxMessage.address == inbound.address,
            OutboxMessage.kind != "reply", OutboxMessage.status == OutboxStatus.SENT)
            .order_by(OutboxMessage.sent_at.desc(), OutboxMessage.id.desc()).limit(1))
        if row.updated_at is not None and row.version:
            query = query.where(OutboxMessage.sent_at >= row.updated_at)
        pushed = await session.scalar(query)
        options = ((pushed.payload or {}).get("options") or []) if pushed is not None else []
        index = int(text) - 1
        if not 0 <= index < len(options):
            return None
        token_row = await session.get(ActionToken, options[index].get("token", ""))
        if token_row is None or token_row.address != inbound.address:
            return None
        return self._use(token_row)

    async def _resolve_token(self, session: AsyncSession, row: DialogSession, inbound: Inbound) -> str | None:
        for token, value, _label in (row.data or {}).get("_opts") or []:
            if token == inbound.option_token:
                return str(value)
        token_row = await session.get(ActionToken, inbound.option_token)
        if (token_row is None or token_row.channel != inbound.channel
                or token_row.address != inbound.address):
            return None
        return self._use(token_row)

    def _use(self, token_row: ActionToken) -> str | None:
        """A pushed button acts once: a second press (or its number typed again) is stale."""
        now = self.services.now()
        if token_row.used_at is not None or (
                token_row.expires_at is not None and token_row.expires_at <= now):
            return None
        token_row.used_at = now
        return str(token_row.action.get("value"))

    async def _menu(self, ctx: StepContext, row: DialogSession, *, quiet: bool = False) -> list[Reply]:
        """The main menu for the sender's role; a newcomer is asked for an invite code."""
        if ctx.person is None:
            if self.welcome is not None and not quiet:
                return await self._start(ctx, row, {"start": self.welcome.name})
            return []
        options = tuple(
            Option(ctx.t(f"{cls.name}.title"), action_value(cls.name))
            for cls in self.dialogs.values() if cls.in_menu and self._allowed(cls, ctx.person)
        )
        if not options:
            return [] if quiet else [Reply(ctx.t("engine.no_menu"))]
        key = "engine.menu_quiet" if quiet else "engine.menu"
        if ctx.person.role == "family":  # parents are addressed with 您
            key += "_family"
        reply = Reply(ctx.t(key, name=ctx.person.name), options)
        row.data = self._options_data(reply)
        row.prompt = self._prompt(reply, row.data)
        return [reply]

    async def _unrouted(self, ctx: StepContext, row: DialogSession, text: str,
                        raw: str = "") -> list[Reply]:
        """Text outside any dialog: a keyword that starts one, else the menu."""
        lowered = text.lower()
        matched = [cls for cls in self.dialogs.values() if lowered in cls.keywords]
        for cls in matched:
            if self._allowed(cls, ctx.person):
                return await self._start(ctx, row, {"start": cls.name, "text": text})
        if ctx.person is None and self.welcome is not None:
            start: dict[str, Any] = {"start": self.welcome.name}
            return await self._start(ctx, row, {**start, "code": text} if text else start)
        fallback = [cls for cls in self.dialogs.values()
                    if cls.catches_free_text and self._allowed(cls, ctx.person)]
        if fallback and text:
            # the words as typed ("raw") too: a family's message is kept exactly as written
            return await self._start(ctx, row, {"start": fallback[0].name, "text": text, "raw": raw})
        if matched:  # a keyword of a dialog this role may not use: say so, kindly
            return [Reply(ctx.t("engine.not_allowed")), *await self._menu(ctx, row)]
        return [Reply(ctx.t("engine.not_understood")), *await self._menu(ctx, row)]

    # --------------------------------------------------------------- outbox

    async def _queue_replies(self, session: AsyncSession, inbound: Inbound,
                             outcome: StepOutcome) -> list[Outgoing]:
        row = outcome.session
        row.version = (row.version or 0) + 1
        now = self.services.now()
        row.updated_at = now
        if row.id is None:  # a new session needs its id for the reply keys; else one flush below
            await session.flush()
        rows = []
        tokens_by_text = {o["label"]: o["token"] for o in (row.prompt or {}).get("options", [])}
        for i, reply in enumerate(merge_replies(outcome.replies)):
            tokens = [tokens_by_text.get(opt.label, "") for opt in reply.options]
            message = OutboxMessage(
                idempotency_key=f"reply:{row.id}:{row.version}:{i}", channel=inbound.channel,
                address=inbound.address, kind="reply",
                person_id=outcome.person.id if outcome.person is not None else row.person_id,
                payload=payload_of(reply, tokens), status=OutboxStatus.SENDING,
                claimed_by="fastpath", claimed_at=now, created_at=now, next_attempt_at=now,
            )
            session.add(message)
            rows.append(message)
        await session.flush()
        return [Outgoing(m.id, m.channel, m.address, m.payload or {}) for m in rows]

    async def _apologise(self, inbound: Inbound) -> list[Outgoing]:
        reply = Reply(catalog.t("engine.failed"))
        try:
            async with self.db.async_session() as session:
                message = OutboxMessage(
                    idempotency_key=f"error:{inbound.channel}:{inbound.address}:{new_token()}",
                    channel=inbound.channel, address=inbound.address, kind="reply",
                    payload=payload_of(reply), status=OutboxStatus.SENDING, claimed_by="fastpath",
                    claimed_at=self.services.now(), created_at=self.services.now(),
                    next_attempt_at=self.services.now(),
                )
                session.add(message)
                await session.flush()
                return [Outgoing(message.id, message.channel, message.address, message.payload or {})]
        except Exception as exc:
            log.error("could not queue the apology error=%s", type(exc).__name__)
            return [Outgoing(0, inbound.channel, inbound.address, payload_of(reply))]

