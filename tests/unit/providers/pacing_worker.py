"""Child process for test_provider_pacing: send N messages at once through a shared bucket.

Usage: ``python pacing_worker.py STATE_PATH RATE BURST COUNT NOW``. Prints ``ready``,
waits for a line on stdin, sends COUNT messages concurrently through a
PacedProvider whose clock stands still at NOW (seconds since the epoch) and
whose sleep only notes the wait it was asked for, then prints those waits
(a send whose token is due at once does not wait) and how many messages
reached the inner provider, as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys

from pigeon.providers.pacing import PacedProvider
from pigeon.providers.port import ProviderReceipt, SmsMessage


class Counting:
    """A provider that counts the sends reaching it."""

    name = "counting"

    def __init__(self) -> None:
        self.sent = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        self.sent += 1
        return ProviderReceipt(f"SM{self.sent}", "queued", 1, self.name)


async def main(state_path: str, rate: float, burst: int, count: int, now: float) -> None:
    inner = Counting()
    waits: list[float] = []

    async def note(seconds: float) -> None:
        waits.append(seconds)

    paced = PacedProvider(
        inner,
        rate_per_second=rate,
        burst=burst,
        state_path=state_path,
        clock=lambda: now,
        sleep=note,
    )
    await paced.start()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    message = SmsMessage(to="+14155550123", body="x")
    await asyncio.gather(*(paced.send(message) for _ in range(count)))
    await paced.stop()
    print(json.dumps({"waits": waits, "sent": inner.sent}), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:6]
    asyncio.run(main(args[0], float(args[1]), int(args[2]), int(args[3]), float(args[4])))
