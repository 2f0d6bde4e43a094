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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.orm.util import identity_key

from dialogs.engine.context import new_tokens
from dialogs.engine.types import Inbound, Option, Reply
from storage.base import table_of
from storage.models import ChannelAddress, DialogSession, Person
from storage.prepared import Prepared

# `last_inbound_at` picks a person's most recently used address; a minute is precise enough,
# and not rewriting the address row on every step saves an UPDATE per step.
SEEN_PRECISION = timedelta(minutes=1)

_T = table_of(DialogSession)
_COLUMNS = ("id", "person_id", "dialog", "state", "data", "prompt", "version", "updated_at", "expires_at")


@dataclass
class SessionRow:
    """One conversation's row, read and written with plain statements rather than as an ORM
    object: the step runs on every message, and the unit of work's bookkeeping for one row
    cost more than the rest of the step's storage work together (benchmarks/dialog_throughput.py).
    """

    channel: str
    address: str
    id: int | None = None
    person_id: int | None = None
    dialog: str | None = None
    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] | None = None
    version: int = 0
    updated_at: datetime | None = None
    expires_at: datetime | None = None


# Built once: constructing a statement costs more than executing a cached one.
_ADDRESSES = table_of(ChannelAddress)
_SEEN_AT = bindparam("seen", type_=_ADDRESSES.c.last_inbound_at.type)
_NAME = bindparam("name", type_=_ADDRESSES.c.display_name.type)
_THIS_ADDRESS = _ADDRESSES.c.id == bindparam("address_id")
_SEEN = Prepared(update(_ADDRESSES).where(_THIS_ADDRESS).values(last_inbound_at=_SEEN_AT),
                 keys=("address_id", "seen"))
_NAMED = Prepared(update(_ADDRESSES).where(_THIS_ADDRESS).values(display_name=_NAME),
                  keys=("address_id", "name"))
_SEEN_NAMED = Prepared(update(_ADDRESSES).where(_THIS_ADDRESS).values(last_inbound_at=_SEEN_AT, display_name=_NAME),
                       keys=("address_id", "seen", "name"))
_ROW = select(*(_T.c[name] for name in _COLUMNS)).where(
    _T.c.channel == bindparam("channel"), _T.c.address == bindparam("address"))
_ROW_LOCKED = _ROW.with_for_update()
# The usual step (someone who has talked before): their session row, their address and who
# they are, at once, as plain columns (the person becomes an ORM object without a second query).
_PEOPLE = table_of(Person)
_PERSON_KEYS = tuple(column.key for column in _PEOPLE.c)
_PERSON_CLASS = manager_of_class(Person)
# Someone's first message (no session row yet): their address and who they are, as plain
# columns too (an ORM query here cost a new volunteer's first step about half a millisecond).
_SENDER = Prepared(select(_ADDRESSES.c.id, _ADDRESSES.c.last_inbound_at, _ADDRESSES.c.display_name, *_PEOPLE.c)
                   .select_from(_ADDRESSES).join(_PEOPLE, _PEOPLE.c.id == _ADDRESSES.c.person_id)
                   .where(_ADDRESSES.c.channel == bindparam("channel"),
                          _ADDRESSES.c.address == bindparam("address")),
                   keys=("channel", "address"))
_BOTH = (select(*(_T.c[name] for name in _COLUMNS), _ADDRESSES.c.id, _ADDRESSES.c.last_inbound_at,
                _ADDRESSES.c.display_name, *_PEOPLE.c)
         .select_from(_T)
         .outerjoin(_ADDRESSES, and_(_ADDRESSES.c.channel == _T.c.channel, _ADDRESSES.c.address == _T.c.address))
         .outerjoin(_PEOPLE, _PEOPLE.c.id == _ADDRESSES.c.person_id)
         .where(_T.c.channel == bindparam("channel"), _T.c.address == bindparam("address")))
_READ_BOTH = Prepared(_BOTH, keys=("channel", "address"))
_READ_BOTH_LOCKED = Prepared(_BOTH.with_for_update(of=_T), keys=("channel", "address"))
_WRITTEN = tuple(name for name in _COLUMNS if name != "id")
_INSERT = Prepared(insert(_T).returning(_T.c.id), keys=("channel", "address", *_WRITTEN))
_UPDATE = Prepared(update(_T).where(_T.c.id == bindparam("row_id")), keys=("row_id", *_WRITTEN))


async def find_sender(session: AsyncSession, inbound: Inbound, now: datetime) -> Person | None:
    """The registered, active person behind this address (noting that they were seen now)."""
    found = await _SENDER.first(session, {"channel": inbound.channel, "address": inbound.address})
    if found is None:
        return None
    return await _seen(session, inbound, now, _attached(session, found[3:]), *found[:3])


async def _seen(session: AsyncSession, inbound: Inbound, now: datetime, person: Person | None,
                address_id: int | None, seen: datetime | None, name: str | None) -> Person | None:
    """Note on the address when it was last used (to the minute) and the name the platform
    shows for it, if it had none: one UPDATE for both when both are due."""
    if person is None or address_id is None:
        return None
    stale = seen is None or not (now - SEEN_PRECISION < seen <= now)
    named = inbound.display_name[:100] if inbound.display_name and not name else None
    if stale and named:
        await _SEEN_NAMED.run(session, {"address_id": address_id, "seen": now, "name": named})
    elif stale:
        await _SEEN.run(session, {"address_id": address_id, "seen": now})
    elif named:
        await _NAMED.run(session, {"address_id": address_id, "name": named})
    return person if person.active else None


def _attached(session: AsyncSession, columns: Sequence[Any]) -> Person | None:
    """The person read as plain columns, as the session's own persistent object (as if loaded
    by a query: nothing to write back), or the one it already holds."""
    values = dict(zip(_PERSON_KEYS, columns, strict=True))
    if values["id"] is None:
        return None
    held = session.identity_map.get(identity_key(Person, values["id"]))
    if isinstance(held, Person):
        return held
    # built as a loader builds it (the values set as loaded, not as eleven attribute changes
    # with their events: a third of this function's cost), then attached as persistent
    person: Person = _PERSON_CLASS.new_instance()
    instance_dict(person).update(values)
    make_transient_to_detached(person)
    session.add(person)
    return person


async def load_session(session: AsyncSession, channel: str, address: str,
                       *, lock: bool) -> SessionRow | None:
    found = (await session.execute(_ROW_LOCKED if _locking(session, lock) else _ROW,
                                   {"channel": channel, "address": address})).first()
    return None if found is None else _row(channel, address, found)


def _locking(session: AsyncSession, lock: bool) -> bool:
    return lock and session.bind is not None and session.bind.dialect.name != "sqlite"


def _row(channel: str, address: str, found: Any) -> SessionRow:
    row = SessionRow(channel, address, **dict(zip(_COLUMNS, found[:len(_COLUMNS)], strict=True)))
    row.data = row.data or {}
    row.version = row.version or 0
    return row


async def open_session(session: AsyncSession, inbound: Inbound,
                       now: datetime) -> tuple[Person | None, SessionRow]:
    """The sender and their session row (locked for this step; a new one for a new address)."""
    keys = {"channel": inbound.channel, "address": inbound.address}
    with session.no_autoflush:
        rows = await (_READ_BOTH_LOCKED if _locking(session, True) else _READ_BOTH).opening(session, keys)
        found = rows[0] if rows else None
        if found is not None:
            row = _row(inbound.channel, inbound.address, found)
            address = found[len(_COLUMNS):len(_COLUMNS) + 3]
            person = await _seen(session, inbound, now, _attached(session, found[len(_COLUMNS) + 3:]), *address)
        else:  # someone's first message: no session row yet
            person = await find_sender(session, inbound, now)
            row = SessionRow(inbound.channel, inbound.address)
    row.person_id = person.id if person else None
    return person, row


async def save_session(session: AsyncSession, row: SessionRow) -> None:
    """Write the row back (a new one gets its id: the step's reply keys use it)."""
    values = {name: getattr(row, name) for name in _WRITTEN}
    if row.id is None:
        (row.id,), = await _INSERT.rows(session, {"channel": row.channel, "address": row.address, **values})
    else:
        await _UPDATE.run(session, {"row_id": row.id, **values})


def options_data(question: Reply) -> dict[str, Any]:
    """Each option gets a fresh opaque token; the value stays on the server."""
    tokens = new_tokens(len(question.options))
    return {"_opts": [[token, opt.value, opt.label] for token, opt in zip(tokens, question.options, strict=True)]}


def _prompt(question: Reply, data: dict[str, Any]) -> dict[str, Any]:
    return {"text": question.text,
            "options": [{"label": label, "token": token} for token, _v, label in data.get("_opts", [])]}


def keep(row: SessionRow, dialog: str, state: str, data: dict[str, Any], question: Reply,
         expires_at: datetime) -> None:
    """The dialog waits in `state` for an answer to `question`."""
    row.dialog = dialog
    row.state = state
    row.data = {**data, **options_data(question)}
    row.prompt = _prompt(question, row.data)
    row.expires_at = expires_at


def offer(row: SessionRow, question: Reply) -> None:
    """Outside any dialog: remember the options just offered (the menu), so a number picks one."""
    row.data = options_data(question)
    row.prompt = _prompt(question, row.data)


def clear(row: SessionRow) -> None:
    row.dialog = None
    row.state = None
    row.data = {}
    row.prompt = None
    row.expires_at = None


def dialog_data(row: SessionRow) -> dict[str, Any]:
    """The dialog's own data, without the engine's keys."""
    return {k: v for k, v in (row.data or {}).items() if not k.startswith("_")}


def waiting_question(row: SessionRow) -> Reply | None:
    """The question the session waits on, with its options' values (to ask it again)."""
    if not row.dialog or not row.prompt:
        return None
    values = [v for _t, v, _l in (row.data or {}).get("_opts", [])]
    return Reply(row.prompt["text"], tuple(
        Option(o["label"], v) for o, v in zip(row.prompt["options"], values, strict=False)))


def pending_prompt(row: SessionRow | None, now: datetime) -> Reply | None:
    """The question shown last, with its tokens, unless the session has expired."""
    if row is None or not row.dialog or not row.prompt:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    prompt = row.prompt
    return Reply(prompt["text"], tuple(Option(o["label"], o["token"]) for o in prompt["options"]))


def tokens_by_label(row: SessionRow) -> dict[str, str]:
    """The shown options' tokens, for rendering the replies' buttons."""
    return {o["label"]: o["token"] for o in (row.prompt or {}).get("options", [])}


def committed(row: SessionRow, now: datetime) -> None:
    """One more step taken: the version numbers the step's reply keys."""
    row.version = (row.version or 0) + 1
    row.updated_at = now
