"""Fixtures for scripted conversations that send many messages in a row (intake, case work)."""

from __future__ import annotations

import pytest

from dialogs.engine.flood import FloodGuard
from tests.chat import Chat


@pytest.fixture(autouse=True)
def typing_faster_than_people(volunteer: Chat) -> None:
    """A scripted dialog sends dozens of messages a second; people never do (flood guard)."""
    volunteer.app.runner.flood = FloodGuard(max_messages=10_000)
