"""Pacing across worker processes, observed where it matters: at the provider."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from providers_testkit import ACCOUNT_SID, AUTH_TOKEN

from pigeon.sandbox import SandboxServer

WORKER = Path(__file__).with_name("pacing_http_worker.py")


@pytest.mark.timeout(90)
async def test_two_sender_processes_share_one_rate_at_the_provider(
    primary: SandboxServer, tmp_path: Path
) -> None:
    """Two processes, 8 messages each, one 10/s bucket (burst 2): the sandbox sees them paced.

    The 16 arrivals span at least 1.4 s after the start signal (each process
    alone would need 0.6 s); noise can only stretch that, never shrink it.
    """
    rate, burst, count = 10.0, 2, 8
    args = [primary.url, ACCOUNT_SID, AUTH_TOKEN, str(tmp_path / "pacing.db")]
    args += [str(rate), str(burst), str(count)]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            async with asyncio.timeout(30):
                assert (await child.stdout.readline()).strip() == b"ready"
        go = datetime.now(UTC)
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        for child in children:
            async with asyncio.timeout(30):
                out, _ = await child.communicate()
            assert child.returncode == 0
            assert out.strip().endswith(b"done")
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()

    arrivals = sorted(m.date_created for m in primary.inbox)
    assert len(arrivals) == 2 * count
    assert (arrivals[-1] - go).total_seconds() >= (2 * count - burst) / rate - 0.02
    for i, start in enumerate(arrivals):
        in_window = sum(1 for t in arrivals[i:] if (t - start).total_seconds() < 1.0)
        assert in_window <= burst + rate * 1.5
