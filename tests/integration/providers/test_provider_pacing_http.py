"""Pacing across worker processes, observed where it matters: at the provider."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from providers_testkit import ACCOUNT_SID, AUTH_TOKEN

from pigeon.sandbox import SandboxServer

WORKER = Path(__file__).with_name("pacing_http_worker.py")


@pytest.mark.timeout(90)
async def test_two_sender_processes_share_one_rate_at_the_provider(
    primary: SandboxServer, tmp_path: Path
) -> None:
    """Two processes, 8 messages each, one 10/s bucket (burst 2): the sandbox gets all 16,
    and pacing held back more of them than two buckets of their own ever could.

    Starting together, the two draw 14 tokens they wait for from the one shared
    schedule; a process alone waits for at most 8 - 2, so two unshared buckets
    hold back at most 12, whatever the timing (noise lets tokens refill, only lowering
    the count: one interval of it is allowed).
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
    held = []
    try:
        for child in children:
            assert child.stdout is not None
            async with asyncio.timeout(30):
                assert (await child.stdout.readline()).strip() == b"ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        for child in children:
            async with asyncio.timeout(30):
                out, _ = await child.communicate()
            assert child.returncode == 0
            done, count_held = out.decode().strip().splitlines()[-1].split()
            assert done == "done"
            held.append(int(count_held))
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()

    assert len(primary.inbox) == 2 * count
    assert sum(held) > 2 * (count - burst), held
