"""Where a conversation waits between steps: one `DialogSession` row per (channel, address).

Per-key isolation: a step works on its own key's row only. On PostgreSQL the row is locked
(`SELECT … FOR UPDATE`) for the step's transaction, so two workers never run one chat's steps
side by side; on SQLite the step's write transaction does the same. Within one process the
channel's dispatcher already runs a chat's steps one after another.

The row holds the dialog's name and state, its data (the dialog's own, plus `_opts`: the
current question's options as [token, value, label], so a button's token resolves on the
server), the question shown (`prompt`, to show again after help or a stale button), and
when it expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.engine.context import new_token
from dialogs.engine.types import Inbound, Option, Reply
from storage.models import ChannelAddress, DialogSession, Person

# `last_inbound_at` picks a person's most recently used address; a minute is precise enough,
# and not rewriting the address row on every step saves an UPDATE per step.
SEEN_PRECISION = timedelta(minutes=1)


async def find_sender(session: AsyncSession, inbound: Inbound, now: datetime) -> Person | None:
    """The registered, active person behind this address (noting that they were seen now)."""
    row = await session.execute(
        select(ChannelAddress, Person).join(Person, Person.id == ChannelAddress.person_id)
        .where(ChannelAddress.channel == inbound.channel, ChannelAddress.address == inbound.address)
    )
    found = row.first()
    if found is None:
        return None
    address, person = found
    seen = address.last_inbound_at
    if seen is None or not (now - SEEN_PRECISION < seen <= now):
        address.last_inbound_at = now
    if inbound.display_name and not address.display_name:
        address.display_name = inbound.display_name[:100]
    return person if person.active else None


async def load_session(session: AsyncSession, channel: str, address: str,
                       *, lock: bool) -> DialogSession | None:
    query = select(DialogSession).where(DialogSession.channel == channel,
                                        DialogSession.address == address)
    if lock and session.bind is not None and session.bind.dialect.name != "sqlite":
        query = query.with_for_update()
    return await session.scalar(query)


async def open_session(session: AsyncSession, inbound: Inbound,
                       now: datetime) -> tuple[Person | None, DialogSession]:
    """The sender and their session row (locked for this step; a new one for a new address)."""
    with session.no_autoflush:  # the sender's last_inbound_at is written with the step's flush
        person = await find_sender(session, inbound, now)
        row = await load_session(session, inbound.channel, inbound.address, lock=True)
    if row is None:
        row = DialogSession(channel=inbound.channel, address=inbound.address, data={},
                            version=0, updated_at=now)
        session.add(row)
    row.person_id = person.id if person else None
    return person, row


def options_data(question: Reply) -> dict[str, Any]:
    """Each option gets a fresh opaque token; the value stays on the server."""
    return {"_opts": [[new_token(), opt.value, opt.label] for opt in question.options]}


def _prompt(question: Reply, data: dict[str, Any]) -> dict[str, Any]:
    return {"text": question.text,
            "options": [{"label": label, "token": token} for token, _v, label in data.get("_opts", [])]}


def keep(row: DialogSession, dialog: str, state: str, data: dict[str, Any], question: Reply,
         expires_at: datetime) -> None:
    """The dialog waits in `state` for an answer to `question`."""
    row.dialog = dialog
    row.state = state
    row.data = {**data, **options_data(question)}
    row.prompt = _prompt(question, row.data)
    row.expires_at = expires_at


def offer(row: DialogSession, question: Reply) -> None:
    """Outside any dialog: remember the options just offered (the menu), so a number picks one."""
    row.data = options_data(question)
    row.prompt = _prompt(question, row.data)


def clear(row: DialogSession) -> None:
    row.dialog = None
    row.state = None
    row.data = {}
    row.prompt = None
    row.expires_at = None


def dialog_data(row: DialogSession) -> dict[str, Any]:
    """The dialog's own data, without the engine's keys."""
    return {k: v for k, v in (row.data or {}).items() if not k.startswith("_")}


def waiting_question(row: DialogSession) -> Reply | None:
    """The question the session waits on, with its options' values (to ask it again)."""
    if not row.dialog or not row.prompt:
        return None
    values = [v for _t, v, _l in (row.data or {}).get("_opts", [])]
    return Reply(row.prompt["text"], tuple(
        Option(o["label"], v) for o, v in zip(row.prompt["options"], values, strict=False)))


def pending_prompt(row: DialogSession | None, now: datetime) -> Reply | None:
    """The question shown last, with its tokens, unless the session has expired."""
    if row is None or not row.dialog or not row.prompt:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    prompt = row.prompt
    return Reply(prompt["text"], tuple(Option(o["label"], o["token"]) for o in prompt["options"]))


def tokens_by_label(row: DialogSession) -> dict[str, str]:
    """The shown options' tokens, for rendering the replies' buttons."""
    return {o["label"]: o["token"] for o in (row.prompt or {}).get("options", [])}


def committed(row: DialogSession, now: datetime) -> None:
    """One more step taken: the version numbers the step's reply keys."""
    row.version = (row.version or 0) + 1
    row.updated_at = now
