"""Child process for test_provider_pacing: send N messages at once through a shared bucket.

Usage: ``python pacing_worker.py STATE_PATH RATE BURST COUNT``. Prints ``ready``,
waits for a line on stdin, sends COUNT messages concurrently through a
PacedProvider whose inner provider only notes the wall-clock time of each
send, then prints those times as one JSON list.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from pigeon.providers.pacing import PacedProvider
from pigeon.providers.port import ProviderReceipt, SmsMessage


class Clocking:
    """A provider that records when each send reached it."""

    name = "clocking"

    def __init__(self) -> None:
        self.times: list[float] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        self.times.append(time.time())
        return ProviderReceipt(f"SM{len(self.times)}", "queued", 1, self.name)


async def main(state_path: str, rate: float, burst: int, count: int) -> None:
    inner = Clocking()
    paced = PacedProvider(inner, rate_per_second=rate, burst=burst, state_path=state_path)
    await paced.start()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    message = SmsMessage(to="+14155550123", body="x")
    await asyncio.gather(*(paced.send(message) for _ in range(count)))
    await paced.stop()
    print(json.dumps(inner.times), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
