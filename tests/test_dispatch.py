"""The per-chat dispatcher: different chats side by side, one chat strictly in order, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.channels.dispatch import KeyedDispatcher, max_concurrent_steps
from bot.config import load_settings


async def test_one_chats_jobs_run_in_order_even_when_the_first_is_slowest() -> None:
    dispatcher = KeyedDispatcher(limit=4)
    done: list[int] = []

    def job(n: int, delay: float) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            await asyncio.sleep(delay)
            done.append(n)
        return work

    for n, delay in enumerate([0.05, 0.0, 0.02, 0.0]):
        dispatcher.submit("chat-1", job(n, delay))
    await dispatcher.wait_idle()
    assert done == [0, 1, 2, 3]


async def test_a_slow_chat_does_not_hold_another_chat() -> None:
    dispatcher = KeyedDispatcher(limit=4)
    slow_started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def slow() -> None:
        slow_started.set()
        await release.wait()
        finished.append("slow")

    async def quick() -> None:
        finished.append("quick")

    dispatcher.submit("a", slow)
    await slow_started.wait()
    await asyncio.wait_for(dispatcher.run("b", quick), 1)
    assert finished == ["quick"], "chat b was answered while chat a's step was still running"
    release.set()
    await dispatcher.wait_idle()
    assert finished == ["quick", "slow"]


async def test_no_more_than_the_limit_run_at_once() -> None:
    dispatcher = KeyedDispatcher(limit=3)
    peak = 0

    async def work() -> None:
        nonlocal peak
        peak = max(peak, dispatcher.running)
        await asyncio.sleep(0.01)

    for i in range(20):
        dispatcher.submit(f"chat-{i}", work)
    await dispatcher.wait_idle()
    assert peak == 3


async def test_a_poller_is_told_when_steps_wait_for_a_slot_and_when_they_stop_waiting() -> None:
    """Telegram's poller asks for no more updates while steps queue for a slot (each answer
    repeats every unconfirmed update); it must learn when the queue has drained."""
    dispatcher = KeyedDispatcher(limit=2)
    release = asyncio.Event()

    async def held() -> None:
        await release.wait()

    for i in range(2):
        dispatcher.submit(f"chat-{i}", held)
    dispatcher.submit("chat-0", held)  # behind its own chat's step: waits for that, not a slot
    await asyncio.sleep(0)
    assert dispatcher.queued == 0
    room = asyncio.ensure_future(dispatcher.wait_for_room())
    await asyncio.sleep(0)
    assert room.done(), "no step waits for a slot yet"
    for i in range(2, 5):
        dispatcher.submit(f"chat-{i}", held)
    await asyncio.sleep(0)
    assert dispatcher.queued == 3
    room = asyncio.ensure_future(dispatcher.wait_for_room())
    await asyncio.sleep(0.01)
    assert not room.done(), "three steps wait for a slot"
    release.set()
    await asyncio.wait_for(room, 1)
    await dispatcher.wait_idle()
    assert dispatcher.queued == 0


async def test_a_failing_job_does_not_stop_the_next_one_of_its_chat() -> None:
    dispatcher = KeyedDispatcher(limit=2)

    async def boom() -> None:
        raise ValueError("bad step")

    async def fine() -> str:
        return "answered"

    failed = dispatcher.submit("a", boom)
    assert await dispatcher.run("a", fine) == "answered"
    with pytest.raises(ValueError):
        await failed


async def test_close_lets_running_jobs_finish_and_refuses_new_ones() -> None:
    dispatcher = KeyedDispatcher(limit=1)
    finished: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.02)
        finished.append("done")

    dispatcher.submit("a", work)
    await dispatcher.close(grace=2)
    assert finished == ["done"]
    with pytest.raises(RuntimeError):
        dispatcher.submit("a", work)


def test_the_bound_is_a_setting_with_a_default(tmp_path: Path) -> None:
    assert max_concurrent_steps(load_settings(db="sqlite:///:memory:", env={})) == 32
    config = tmp_path / "w.toml"
    config.write_text("[core]\nmax_concurrent_steps = 3\n")
    assert max_concurrent_steps(load_settings(db="sqlite:///:memory:", config=str(config), env={})) == 3
