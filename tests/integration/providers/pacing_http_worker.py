"""Child process for test_provider_pacing_http: send N messages at once through a paced provider.

Usage: ``python pacing_http_worker.py SANDBOX_URL ACCOUNT_SID AUTH_TOKEN STATE_PATH RATE BURST
COUNT``. Builds the provider with the production factory, prints ``ready``,
waits for a line on stdin, sends COUNT messages concurrently, then prints how
many of them pacing held back for their token, as ``done <held>``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pigeon.providers.factory import ProviderEntry, ProviderSettings, build_sms_provider
from pigeon.providers.pacing import PacedProvider
from pigeon.providers.port import SmsMessage


async def main(argv: list[str]) -> None:
    url, sid, token, state, rate, burst, count = argv
    entry = ProviderEntry("primary", url, sid, token, "+15005550006")
    provider = build_sms_provider(
        ProviderSettings(
            [entry],
            pacing_rate_per_second=float(rate),
            pacing_burst=int(burst),
            pacing_state_path=Path(state),
        )
    )
    (member,) = provider.members
    paced = member.provider
    assert isinstance(paced, PacedProvider)
    await provider.start()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    messages = [SmsMessage(to="+14155550123", body=f"paced {i}") for i in range(int(count))]
    await asyncio.gather(*(provider.send(m) for m in messages))
    await provider.stop()
    print(f"done {paced.held}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:8]))
