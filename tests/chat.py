"""A test driver that talks to the runner the way the console channel does."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.app import App
from bot.channels.render import numbered_text
from dialogs.engine.types import Inbound
from storage.models import ChannelAddress, Person


class Chat:
    """One person's side of a conversation, over a given channel (console by default)."""

    def __init__(self, app: App, address: str, channel: str = "console") -> None:
        self.app = app
        self.address = address
        self.channel = channel
        self.transcript: list[dict[str, Any]] = []
        self._linked = False

    async def _link(self) -> None:
        if self._linked:
            return
        self._linked = True
        await self.app.runner.link_phone(self.channel, self.address, self.address)

    async def send(self, text: str = "", **extra: Any) -> list[dict[str, Any]]:
        await self._link()
        outgoing = await self.app.runner.handle(Inbound(self.channel, self.address, text=text, **extra))
        await self.app.runner.mark_sent([o.outbox_id for o in outgoing if o.outbox_id])
        payloads = [o.payload for o in outgoing]
        self.transcript.extend(payloads)
        return payloads

    async def say(self, text: str = "", **extra: Any) -> str:
        """Send and return all replies as one numbered text, as the console would print it."""
        return "\n\n".join(numbered_text(p) for p in await self.send(text, **extra))

    async def script(self, *lines: str) -> str:
        out = ""
        for line in lines:
            out = await self.say(line)
        return out

    @property
    def last(self) -> dict[str, Any]:
        return self.transcript[-1]

    def token_for(self, label_part: str) -> str:
        for option in self.last["options"]:
            if label_part in option["label"]:
                return option["token"]
        raise AssertionError(f"no option with {label_part!r} in {self.last}")

    def person(self) -> Person | None:
        with self.app.db.session() as session:
            return session.scalar(select(Person).join(ChannelAddress).where(
                ChannelAddress.channel == self.channel, ChannelAddress.address == self.address))
