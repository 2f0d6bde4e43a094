"""The console channel: chat with Warmline in a terminal, or drive it from a script.

Interactive on a terminal (a prompt, numbered options); with stdin from a pipe it reads one
message per line and prints every reply, so sessions can be scripted and tested. Messages
queued for this address while it was away (alerts, reminders) are shown when it opens.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from sqlalchemy import select

from bot.channels.render import numbered_text
from dialogs.engine.runner import Runner
from dialogs.engine.types import Inbound, Outgoing, Reply
from storage.models import OutboxMessage, OutboxStatus

CHANNEL = "console"
QUIT_WORDS = {"/quit", "/exit", ":q"}


class ConsoleChat:
    def __init__(self, runner: Runner, address: str, out: TextIO) -> None:
        self.runner = runner
        self.address = address
        self.out = out

    def show(self, payload: dict) -> None:
        self.out.write(numbered_text(payload) + "\n\n")
        self.out.flush()

    async def deliver(self, outgoing: list[Outgoing]) -> None:
        for message in outgoing:
            self.show(message.payload)
        await self.runner.mark_sent([m.outbox_id for m in outgoing if m.outbox_id])

    async def deliver_waiting(self) -> None:
        """Show what the outbox holds for this console address (alerts, reminders) and mark it sent."""
        async with self.runner.db.async_session() as session:
            rows = list(await session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.channel == CHANNEL, OutboxMessage.address == self.address,
                    OutboxMessage.status == OutboxStatus.QUEUED,
                    OutboxMessage.next_attempt_at <= self.runner.services.now(),
                ).order_by(OutboxMessage.id)))
        await self.deliver([Outgoing(r.id, r.channel, r.address, r.payload) for r in rows])

    async def open(self) -> None:
        await self.runner.link_phone(CHANNEL, self.address, self.address)
        await self.deliver_waiting()
        pending: Reply | None = await self.runner.pending_prompt(CHANNEL, self.address)
        if pending is not None:
            self.show({"text": pending.text, "options": [{"label": o.label} for o in pending.options]})
        else:
            await self.send("菜单")

    async def send(self, text: str) -> None:
        await self.deliver(await self.runner.handle(Inbound(CHANNEL, self.address, text=text)))


async def run_console(runner: Runner, address: str, stdin: TextIO | None = None,
                      out: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    chat = ConsoleChat(runner, address, out or sys.stdout)
    interactive = stdin.isatty()
    await chat.open()
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            chat.out.write("> ")
            chat.out.flush()
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            break
        text = line.rstrip("\r\n")
        if text.strip() in QUIT_WORDS:
            break
        if not text.strip():
            continue
        await chat.send(text)
    return 0
