"""The baseline for the dialog benchmark: the visit report written the usual PTB way.

A `ConversationHandler` with one handler per state, the answers kept in `context.user_data`,
the conversation state and user data persisted with `PicklePersistence` — flushed to disk after
every update (`update_persistence()` then `flush()`), so a crash loses no more than Warmline's
per-step commit would. It asks the same questions (the same catalogue texts and options, as
inline keyboards), reads the volunteer's households from the same database when it starts and
writes the same Visit row when the volunteer confirms. It does *not* do what Warmline's runner
adds to every step (dedupe of platform retries, scope checks, an outbox row per reply, the
audit entry, the idle timeout, help/cancel/menu words): that difference is part of what the
comparison shows.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    PicklePersistence,
    filters,
)

from benchmarks.local_bot_api import LocalBotAPI
from dialogs.engine import catalog
from storage.db import Database
from storage.models import ChannelAddress, Person, Visit
from storage.queries import household_labels, households_for

(HOUSEHOLD, WHEN, KIND, OCCASION, PHYSICAL, MOOD, NEEDS, MONEY, FOLLOWUP, CONFIRM) = range(10)
KINDS = ("home", "phone", "wechat", "card", "activity")
CHANNEL = "ptb"


def _t(key: str, **values: Any) -> str:
    return catalog.t(key, **values)


def _keyboard(options: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=value[:64] or "-")]
                                 for label, value in options])


def _pick(text: str, options: list[tuple[str, str]]) -> str | None:
    """The value of the option the user typed (its number or its label)."""
    if text.isdigit() and 1 <= int(text) <= len(options):
        return options[int(text) - 1][1]
    for label, value in options:
        if text == label:
            return value
    return None


async def ask(update: Update, context: ContextTypes.DEFAULT_TYPE, text: str,
              options: list[tuple[str, str]]) -> None:
    """Send a question with its options as an inline keyboard; remember the options."""
    context.user_data["options"] = options  # type: ignore[index]
    assert update.effective_chat is not None
    await context.bot.send_message(update.effective_chat.id, text,
                                   reply_markup=_keyboard(options) if options else None)


def typed_choice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str | None:
    """The value of the remembered option the user typed (its number or label)."""
    assert update.message is not None
    return _pick((update.message.text or "").strip(), context.user_data.get("options", []))  # type: ignore[union-attr]


async def volunteer_households(db: Database, update: Update) -> tuple[Person, list[Any], dict[int, str]]:
    """The chat's volunteer, their first 40 households and the households' labels."""
    assert update.effective_chat is not None
    async with db.async_session() as session:
        person = await session.scalar(select(Person).join(
            ChannelAddress, ChannelAddress.person_id == Person.id).where(
            ChannelAddress.channel == CHANNEL, ChannelAddress.address == str(update.effective_chat.id)))
        assert person is not None
        households = (await households_for(session, person))[:40]
        labels = await household_labels(session, households)
    return person, households, labels


class BaselineVisitBot:
    """The conversation and its PTB Application (same in-memory Bot API as Warmline's side)."""

    def __init__(self, db: Database, pickle_path: Path, today: date) -> None:
        self.db = db
        self.today = today
        self.request = LocalBotAPI()
        self.persistence = PicklePersistence(filepath=pickle_path, on_flush=True)
        self.application: Application = (
            ApplicationBuilder().token("7000001:baseline").request(self.request)
            .get_updates_request(LocalBotAPI()).persistence(self.persistence).updater(None).build())
        text = filters.TEXT & ~filters.COMMAND
        self.application.add_handler(ConversationHandler(
            entry_points=[MessageHandler(filters.Regex("^(走访记录|走访)$"), self.start)],
            states={
                HOUSEHOLD: [MessageHandler(text, self.household)],
                WHEN: [MessageHandler(text, self.when)],
                KIND: [MessageHandler(text, self.kind)],
                OCCASION: [MessageHandler(text, self.occasion)],
                PHYSICAL: [MessageHandler(text, self.physical)],
                MOOD: [MessageHandler(text, self.mood)],
                NEEDS: [MessageHandler(text, self.needs)],
                MONEY: [MessageHandler(text, self.money)],
                FOLLOWUP: [MessageHandler(text, self.followup)],
                CONFIRM: [MessageHandler(text, self.confirm)],
            },
            fallbacks=[], name="visit", persistent=True))

    async def initialize(self) -> None:
        await self.application.initialize()

    async def shutdown(self) -> None:
        await self.application.shutdown()

    async def process(self, update_data: dict[str, Any]) -> None:
        """One update to the end, then the durable flush the usual way."""
        await self.application.process_update(Update.de_json(update_data, self.application.bot))
        await self.application.update_persistence()
        await self.persistence.flush()

    # ------------------------------------------------------------------ states

    async def _ask(self, update: Update, text: str, options: list[tuple[str, str]],
                   context: ContextTypes.DEFAULT_TYPE) -> None:
        await ask(update, context, text, options)

    def _answer(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> str | None:
        return typed_choice(update, context)

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        person, households, labels = await volunteer_households(self.db, update)
        context.user_data.clear()  # type: ignore[union-attr]
        context.user_data["visit"] = {"volunteer_id": person.id}  # type: ignore[index]
        await self._ask(update, _t("common.which_household"),
                        [(labels[h.id], str(h.id)) for h in households[:40]], context)
        return HOUSEHOLD

    async def household(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        value = self._answer(update, context)
        if value is None:
            await self._ask(update, _t("common.pick_household"), context.user_data["options"], context)  # type: ignore[index]
            return HOUSEHOLD
        context.user_data["visit"]["household_id"] = int(value)  # type: ignore[index]
        await self._ask(update, _t("visit.ask_when"), [(_t("visit.today"), "today"),
                                                       (_t("visit.yesterday"), "yesterday")], context)
        return WHEN

    async def when(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        value = self._answer(update, context)
        day = {"today": self.today, "yesterday": self.today - timedelta(days=1)}.get(value or "")
        if day is None:
            await self._ask(update, _t("visit.bad_date"), context.user_data["options"], context)  # type: ignore[index]
            return WHEN
        context.user_data["visit"]["visited_on"] = day.isoformat()  # type: ignore[index]
        await self._ask(update, _t("visit.ask_kind"), [(_t(f"visit.kind_{k}"), k) for k in KINDS], context)
        return KIND

    async def kind(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        value = self._answer(update, context)
        if value is None:
            await self._ask(update, _t("engine.invalid_choice"), context.user_data["options"], context)  # type: ignore[index]
            return KIND
        context.user_data["visit"]["kind"] = value  # type: ignore[index]
        await self._ask(update, _t("visit.ask_occasion"), [(_t("visit.no_occasion"), "none"),
                                                           (_t("visit.birthday"), "birthday")], context)
        return OCCASION

    async def occasion(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        value = self._answer(update, context)
        context.user_data["visit"]["occasion"] = None if value in (None, "none") else value  # type: ignore[index]
        await self._ask(update, _t("visit.ask_physical"),
                        [(_t(f"visit.physical_{k}"), _t(f"visit.physical_{k}")) for k in ("good", "fair", "poor")],
                        context)
        return PHYSICAL

    async def physical(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None
        context.user_data["visit"]["physical"] = self._answer(update, context) or update.message.text  # type: ignore[index]
        await self._ask(update, _t("visit.ask_mood"),
                        [(_t(f"visit.mood_{k}"), _t(f"visit.mood_{k}")) for k in ("calm", "low", "anxious", "good")],
                        context)
        return MOOD

    async def mood(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None
        context.user_data["visit"]["mood"] = self._answer(update, context) or update.message.text  # type: ignore[index]
        await self._ask(update, _t("visit.ask_needs"), [(_t("engine.none"), "")], context)
        return NEEDS

    async def needs(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None
        text = (update.message.text or "").strip()
        context.user_data["visit"]["needs"] = "" if text in {"无", "没有", "1"} else text  # type: ignore[index]
        await self._ask(update, _t("visit.ask_money"), [(_t("engine.none"), "0")], context)
        return MONEY

    async def money(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None
        text = (update.message.text or "").strip()
        yuan = 0 if text in {"无", "0", "1"} else int(text) if text.isdigit() else None
        if yuan is None:
            await self._ask(update, _t("visit.bad_money"), context.user_data["options"], context)  # type: ignore[index]
            return MONEY
        context.user_data["visit"]["money_fen"] = yuan * 100  # type: ignore[index]
        await self._ask(update, _t("visit.ask_followup"), [(_t("engine.yes"), "yes"), (_t("engine.no"), "no")],
                        context)
        return FOLLOWUP

    async def followup(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        value = self._answer(update, context)
        if value is None:
            await self._ask(update, _t("engine.invalid_choice"), context.user_data["options"], context)  # type: ignore[index]
            return FOLLOWUP
        visit = context.user_data["visit"]  # type: ignore[index]
        visit["follow_up"] = value == "yes"
        summary = "\n".join(f"{k}: {v}" for k, v in visit.items())
        await self._ask(update, summary + "\n" + _t("visit.ask_confirm"),
                        [(_t("engine.save"), "save"), (_t("engine.edit"), "edit"),
                         (_t("common.discard"), "discard")], context)
        return CONFIRM

    async def confirm(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        value = self._answer(update, context)
        if value != "save":
            await self._ask(update, _t("common.discarded"), [], context)
            return ConversationHandler.END
        v = context.user_data["visit"]  # type: ignore[index]
        async with self.db.async_session() as session:
            session.add(Visit(
                household_id=v["household_id"], volunteer_id=v["volunteer_id"],
                visited_on=date.fromisoformat(v["visited_on"]), kind=v["kind"], outcome="done",
                occasion=v.get("occasion"), physical_state=v.get("physical"), mood=v.get("mood"),
                needs=v.get("needs") or None, money_fen=v.get("money_fen", 0),
                follow_up=bool(v.get("follow_up")), source="baseline", recorded_at=_now()))
        context.user_data.clear()  # type: ignore[union-attr]
        await self._ask(update, _t("visit.saved"), [], context)
        return ConversationHandler.END


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
