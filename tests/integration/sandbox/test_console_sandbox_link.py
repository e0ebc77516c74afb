"""The console's link to the sandbox, over real HTTP to a running sandbox."""

from __future__ import annotations

import pytest
from sandbox_testkit import TO

from harness.processes import free_port
from pigeon.console.sandbox_link import SandboxLink, SandboxUnavailable
from pigeon.errors import ValidationError
from pigeon.providers.port import SmsMessage
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.sandbox import SandboxServer


async def test_the_link_finds_the_sandbox_among_the_providers_and_reads_its_inbox(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> None:
    """A provider URL nobody answers on is passed over; the sandbox's inbox lists what it
    accepted, newest first, and clearing it says how many went."""
    nobody = f"http://127.0.0.1:{free_port()}"
    link = SandboxLink((nobody, "https://api.twilio.com", sandbox.url))
    for body in ("first", "second"):
        await provider.send(SmsMessage(to=TO, body=body))

    assert await link.url() == sandbox.url
    inbox = await link.inbox(limit=10)
    assert [m["body"] for m in inbox] == ["second", "first"]
    assert await link.clear() == 2
    assert await link.inbox() == []


async def test_fault_switches_are_read_changed_and_refused_by_name(
    sandbox: SandboxServer,
) -> None:
    """A good change is applied and read back; one the sandbox refuses is a
    ValidationError naming the field, and changes nothing."""
    link = SandboxLink((sandbox.url,))
    state = await link.set_faults({"error_rate": 0.25})
    assert state["error_rate"] == 0.25
    assert (await link.faults())["error_rate"] == 0.25
    with pytest.raises(ValidationError) as refused:
        await link.set_faults({"error_rate": 2})
    assert "error_rate" in str(refused.value)
    assert sandbox.faults.state()["error_rate"] == 0.25


async def test_no_sandbox_or_one_gone_quiet_is_sandbox_unavailable(
    sandbox: SandboxServer,
) -> None:
    """Without a sandbox among the providers nothing is called; a sandbox that stops
    answering is SandboxUnavailable naming its address, not a crash."""
    assert await SandboxLink(("https://api.twilio.com",)).url() is None
    with pytest.raises(SandboxUnavailable, match="no sandbox"):
        await SandboxLink(()).faults()

    link = SandboxLink((sandbox.url,))
    assert await link.url() == sandbox.url  # found, and trusted for a while
    await sandbox.stop()
    with pytest.raises(SandboxUnavailable, match=f"the sandbox at {sandbox.url} does not"):
        await link.faults()
