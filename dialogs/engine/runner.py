"""The conversation runner: one inbound message in, one transaction, replies out.

For each message it claims the platform's message id (a retry is handled once), opens the
sender's session, lets `interpret` say what the input means, lets the `Driver` run the dialog
it belongs to, and writes the replies to the outbox (`replies`) — all in one unit of work. If
any of that fails, nothing of it is kept and the sender is asked kindly to try again. The
parts: `interpret.py` (control words, options, buttons), `driver.py` (dialogs), `sessions.py`
(the session row, per-key isolation), `replies.py` (one message per step, outbox rows).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from time import monotonic

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine import catalog, interpret, sessions
from dialogs.engine.context import StepContext, payload_of, route_waiting
from dialogs.engine.dialog import Answer, Dialog, action_value, parse_action
from dialogs.engine.driver import Driver
from dialogs.engine.flood import FloodGuard
from dialogs.engine.replies import Written, queue_apology, queue_replies
from dialogs.engine.types import Inbound, Outgoing, Reply
from dialogs.parsing import normalize
from dialogs.services import Services
from storage import outbox
from storage.base import table_of
from storage.db import Database
from storage.models import ChannelAddress, Person, ProcessedInbound
from storage.prepared import Prepared, pipelined

log = logging.getLogger("warmline.runner")
_CLAIM = Prepared(insert(table_of(ProcessedInbound)), keys=("channel", "inbound_key", "processed_at"))

__all__ = ["Handled", "Runner", "StepOutcome"]


@dataclass
class StepOutcome:
    replies: list[Reply]
    session: sessions.SessionRow
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


class Runner:
    """Feeds inbound messages to dialogs; every call is one durable step."""

    def __init__(self, db: Database, services: Services, dialogs: Sequence[type[Dialog]],
                 flood: FloodGuard | None = None) -> None:
        self.db = db
        self.services = services
        self.driver = Driver(dialogs, services)
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
                outcome = await self._step(session, inbound)
                # PostgreSQL: the step's writes and its COMMIT in one round trip
                async with pipelined(session, commit=True):
                    await self._claim(session, inbound)
                    written = await self._write(session, inbound, outcome)
                outgoing = await written()
                return Handled(outgoing, newcomer=outcome.newcomer,
                               registered=outcome.person is not None,
                               wants_contact=self.driver.contact_answers(outcome.session))
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
            row = await sessions.load_session(session, channel, address, lock=False)
            return sessions.pending_prompt(row, self.services.now())

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
                await route_waiting(session, person.id, channel, address, self.services)
            elif existing.person_id != person.id:
                return None
            return person

    async def mark_sent(self, outbox_ids: Sequence[int], platform_ids: Sequence[str | None] | None = None,
                        ) -> None:
        """Record fast-path deliveries as sent."""
        if not outbox_ids:
            return
        async with self.db.async_session() as session:
            now = self.services.now()
            await outbox.mark_sent(session, [(oid, platform_ids[i] if platform_ids else None, now)
                                             for i, oid in enumerate(outbox_ids)])

    # ---------------------------------------------------------------- the step

    async def _claim(self, session: AsyncSession, inbound: Inbound) -> None:
        """Claim the platform message id; a copy already processed fails on the primary key.

        No SELECT first: the row is written with the step's other changes, and a repeat's
        IntegrityError rolls the whole step back in `handle_step`, exactly as for a
        concurrent copy.
        """
        if inbound.message_id:
            await _CLAIM.run(session, {"channel": inbound.channel, "inbound_key": inbound.message_id,
                                       "processed_at": self.services.now()})

    async def _step(self, session: AsyncSession, inbound: Inbound) -> StepOutcome:
        person, row = await sessions.open_session(session, inbound, self.services.now())
        ctx = StepContext(session=session, services=self.services, channel=inbound.channel,
                          address=inbound.address, person=person,
                          locale=(person.locale if person else catalog.DEFAULT_LOCALE))
        replies = await self._route(ctx, row, inbound)
        return StepOutcome(replies, row, person=ctx.person, newcomer=person is None)

    async def _route(self, ctx: StepContext, row: sessions.SessionRow, inbound: Inbound) -> list[Reply]:
        """Interpret the input and drive the dialog it belongs to; the replies, in order."""
        driver, session, person, now = self.driver, ctx.session, ctx.person, ctx.now()
        replies: list[Reply] = []

        if row.dialog and row.expires_at is not None and row.expires_at <= now:
            title = driver.title(ctx, row.dialog)
            sessions.clear(row)
            replies.append(Reply(ctx.t("engine.timed_out", dialog=title)))

        text = normalize(inbound.text)
        word = text.lower()
        answer_value: str | None = None

        if inbound.option_token:
            answer_value = await interpret.resolve_token(session, row, inbound, now)
            if answer_value is None:
                replies.append(Reply(ctx.t("engine.stale_button")))
                return replies + await driver.reshow(ctx, row)
        elif inbound.event and (cls := driver.for_event(inbound.event, person)) is not None:
            scene = {"code": inbound.start_payload} if inbound.start_payload else {}  # a QR's code
            answer_value = action_value(cls.name, event=inbound.event, **scene)
        elif inbound.event and not inbound.start_payload:
            return []  # an event nobody handles needs no reply
        elif (interrupt := driver.global_keyword(word, person)) is not None:
            if row.dialog and row.dialog != interrupt.name:
                replies.append(Reply(ctx.t("engine.left_unsaved", dialog=driver.title(ctx, row.dialog))))
            answer_value = action_value(interrupt.name, text=text)
        elif inbound.start_payload:
            answer_value = driver.newcomer_action(code=inbound.start_payload)
        elif inbound.contact_phone and person is None:
            answer_value = driver.newcomer_action(phone=inbound.contact_phone)
        elif (control := interpret.control_word(word)) == "cancel":
            had = row.dialog
            sessions.clear(row)
            replies.append(Reply(ctx.t("engine.cancelled" if had else "engine.nothing_to_cancel")))
            return replies + await driver.menu(ctx, row)
        elif control == "help":
            replies.append(Reply(driver.help(ctx, row)))
            return replies + await driver.reshow(ctx, row)
        elif control == "menu":
            if row.dialog:
                replies.append(Reply(ctx.t("engine.left_unsaved", dialog=driver.title(ctx, row.dialog))))
            sessions.clear(row)
            return replies + await driver.menu(ctx, row)
        else:
            # outside a dialog, a message pushed since the last step is what a number answers
            if not row.dialog:
                answer_value = await interpret.match_pushed(session, row, inbound, text, now)
            answer_value = answer_value or interpret.match_option(row, text)

        action = parse_action(answer_value) if answer_value else None
        if action is not None and "start" in action:
            replies.extend(await driver.start(ctx, row, action))
        elif row.dialog and row.dialog in driver.dialogs:
            replies.extend(await driver.proceed(ctx, row, Answer(text, answer_value, inbound.text)))
        else:
            replies.extend(await driver.unrouted(ctx, row, text, inbound.text))
        return replies

    # --------------------------------------------------------------- outbox

    async def _write(self, session: AsyncSession, inbound: Inbound, outcome: StepOutcome) -> Written:
        row = outcome.session
        now = self.services.now()
        sessions.committed(row, now)
        await sessions.save_session(session, row)  # a new session gets the id the reply keys need
        person_id = outcome.person.id if outcome.person is not None else row.person_id
        return await queue_replies(session, inbound, outcome.replies,
                                   key_prefix=f"reply:{row.id}:{row.version}", person_id=person_id,
                                   tokens=sessions.tokens_by_label(row), now=now)

    async def _apologise(self, inbound: Inbound) -> list[Outgoing]:
        text = catalog.t("engine.failed")
        try:
            async with self.db.async_session() as session:
                return [await queue_apology(session, inbound, text, self.services.now())]
        except Exception as exc:
            log.error("could not queue the apology error=%s", type(exc).__name__)
            return [Outgoing(0, inbound.channel, inbound.address, payload_of(Reply(text)))]
