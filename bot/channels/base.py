"""What `warmline run` needs from a channel, and how it finds the configured ones.

Each module in `bot/channels/` that can run as a service exposes
`from_app(app) -> Channel | None` (None when its settings are absent). A channel may serve
HTTP routes (webhooks), run a background task (polling), and provide a sender for the
delivery worker.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Protocol

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from bot.app import App
    from bot.delivery.base import ChannelSender


class Channel(Protocol):
    name: str

    def routes(self) -> list[BaseRoute]: ...

    def sender(self) -> ChannelSender | None: ...

    async def start(self) -> None:
        """Begin background work (polling, webhook registration); return promptly."""
        ...

    async def stop(self) -> None: ...


def configured_channels(app: App) -> list[Channel]:
    import bot.channels

    found: list[Channel] = []
    for module_info in sorted(pkgutil.iter_modules(bot.channels.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"bot.channels.{module_info.name}")
        factory = getattr(module, "from_app", None)
        if factory is None:
            continue
        channel = factory(app)
        if channel is not None:
            found.append(channel)
    return found
