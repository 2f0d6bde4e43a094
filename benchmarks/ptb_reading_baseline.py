"""The end-to-end baseline: a health reading written the usual python-telegram-bot way, polling.

    python benchmarks/ptb_reading_baseline.py --base-url URL --db URL --pickle PATH

A `ConversationHandler` with one handler per state, the answers in `context.user_data`, the
conversation and user data in `PicklePersistence` flushed after every update (a last handler
group calls `update_persistence()` then `flush()`), run by PTB's own `Application.run_polling`
with its defaults (one update at a time). It asks the same questions as Warmline's reading
dialog (the same catalogue texts, inline keyboards), reads the volunteer's households and their
elders from the same database and writes the same HealthReading row when the volunteer confirms.
It does none of what Warmline's runner adds to every step (dedupe of platform retries, scope
checks, an outbox row per reply, the audit entry, idle timeout, help/cancel/menu words).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    PicklePersistence,
    TypeHandler,
    filters,
)

from benchmarks.common import BENCH_DATA_KEY
from benchmarks.ptb_baseline import _t, ask, typed_choice, volunteer_households
from dialogs.readings import parse_reading
from storage.crypto import KeyRing
from storage.db import Database
from storage.models import HealthReading
from storage.queries import members_of

HOUSEHOLD, MEMBER, KIND, ADVICE, CONFIRM = range(5)
CHANNEL = "ptb"
Options = list[tuple[str, str]]


class ReadingBot:
    def __init__(self, db: Database) -> None:
        self.db = db

    def handlers(self, application: Application) -> None:
        text = filters.TEXT & ~filters.COMMAND
        application.add_handler(ConversationHandler(
            entry_points=[MessageHandler(filters.Regex("^(健康数据|健康)$"), self.start)],
            states={HOUSEHOLD: [MessageHandler(text, self.household)],
                    MEMBER: [MessageHandler(text, self.member)],
                    KIND: [MessageHandler(text, self.kind)],
                    ADVICE: [MessageHandler(text, self.advice)],
                    CONFIRM: [MessageHandler(text, self.confirm)]},
            fallbacks=[], name="reading", persistent=True))

        async def flush(_update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
            await context.application.update_persistence()
            assert context.application.persistence is not None
            await context.application.persistence.flush()

        application.add_handler(TypeHandler(Update, flush), group=1)

    _ask = staticmethod(ask)
    _answer = staticmethod(typed_choice)

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        person, households, labels = await volunteer_households(self.db, update)
        context.user_data.clear()  # type: ignore[union-attr]
        context.user_data["reading"] = {"volunteer_id": person.id}  # type: ignore[index]
        await self._ask(update, context, _t("common.which_household"),
                        [(labels[h.id], str(h.id)) for h in households])
        return HOUSEHOLD

    async def household(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        value = self._answer(update, context)
        if value is None:
            await self._ask(update, context, _t("common.pick_household"), context.user_data["options"])  # type: ignore[index]
            return HOUSEHOLD
        context.user_data["reading"]["household_id"] = int(value)  # type: ignore[index]
        async with self.db.async_session() as session:
            members = await members_of(session, int(value))
        elders = [(m, p) for m, p in members if m.relation in {"father", "mother"}] or members
        if len(elders) > 1:
            await self._ask(update, context, _t("reading.ask_member"),
                            [(p.name, str(m.id)) for m, p in elders])
            return MEMBER
        context.user_data["reading"]["member_id"] = elders[0][0].id if elders else None  # type: ignore[index]
        return await self._ask_kind(update, context)

    async def member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        value = self._answer(update, context)
        if value is None:
            await self._ask(update, context, _t("engine.invalid_choice"), context.user_data["options"])  # type: ignore[index]
            return MEMBER
        context.user_data["reading"]["member_id"] = int(value)  # type: ignore[index]
        return await self._ask_kind(update, context)

    async def _ask_kind(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        await self._ask(update, context, _t("reading.ask_kind"),
                        [(_t("reading.kind_bp"), "bp"), (_t("reading.kind_glucose"), "glucose"),
                         (_t("reading.kind_both"), "both")])
        return KIND

    async def kind(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None
        reading = parse_reading(update.message.text or "")
        if reading.empty:
            await self._ask(update, context, _t("reading.bad_kind"), context.user_data["options"])  # type: ignore[index]
            return KIND
        context.user_data["reading"].update(  # type: ignore[index]
            systolic=reading.systolic, diastolic=reading.diastolic, pulse=reading.pulse)
        await self._ask(update, context, _t("reading.ask_advice"), [(_t("engine.none"), "")])
        return ADVICE

    async def advice(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None
        text = (update.message.text or "").strip()
        reading = context.user_data["reading"]  # type: ignore[index]
        reading["advice"] = "" if text in {"无", "没有", "1"} else text
        summary = "\n".join(f"{k}: {v}" for k, v in reading.items())
        await self._ask(update, context, summary + "\n" + _t("reading.ask_confirm"),
                        [(_t("engine.save"), "save"), (_t("engine.edit"), "edit"),
                         (_t("common.discard"), "discard")])
        return CONFIRM

    async def confirm(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        if self._answer(update, context) != "save":
            await self._ask(update, context, _t("common.discarded"), [])
            return ConversationHandler.END
        r = context.user_data["reading"]  # type: ignore[index]
        now = datetime.now(UTC)
        async with self.db.async_session() as session:
            session.add(HealthReading(
                household_id=r["household_id"], member_id=r.get("member_id"),
                volunteer_id=r["volunteer_id"], measured_at=now, systolic=r.get("systolic"),
                diastolic=r.get("diastolic"), pulse=r.get("pulse"), advice=r.get("advice") or None,
                danger=False, recorded_at=now))
        context.user_data.clear()  # type: ignore[union-attr]
        await self._ask(update, context, _t("reading.saved"), [])
        return ConversationHandler.END


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the Bot API, e.g. http://127.0.0.1:8123")
    parser.add_argument("--db", required=True)
    parser.add_argument("--pickle", required=True)
    args = parser.parse_args()
    db = Database(args.db, keyring=KeyRing.from_setting(BENCH_DATA_KEY))
    application = (ApplicationBuilder().token("7000003:baseline")
                   .base_url(f"{args.base_url}/bot").base_file_url(f"{args.base_url}/file/bot")
                   .persistence(PicklePersistence(filepath=args.pickle, on_flush=True)).build())
    ReadingBot(db).handlers(application)
    application.run_polling(allowed_updates=["message"], timeout=10, close_loop=False)


if __name__ == "__main__":
    main()
