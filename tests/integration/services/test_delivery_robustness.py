"""The sender against misbehaving providers: lost answers, failover, pacing."""

from __future__ import annotations

import asyncio

from services_testkit import Stack
from test_sms_sender_service import (
    SID,
    TOKEN,
    accept,
    handled_before,
    running,
    sent_bodies,
    wait_status,
)
from tests.support import eventually

from pigeon.bootstrap import Pigeon
from pigeon.providers.failover import FailoverProvider
from pigeon.providers.pacing import PacedProvider
from pigeon.sandbox.faults import FaultConfig
from pigeon.sandbox.server import SandboxServer


async def _view_when(pigeon: Pigeon, nid: str, status: str) -> list[str]:
    """The timeline's details once the notification is ``status``."""
    await wait_status(pigeon, nid, status)
    account = await pigeon.store.ensure_account("acme")
    view = await pigeon.store.get_view(account.id, nid)
    assert view is not None
    return [e.detail for e in view.timeline]


async def test_an_answer_lost_after_the_provider_accepted_is_reconciled_not_resent(
    stack: Stack,
) -> None:
    """The provider keeps the message but drops the connection: the next attempt
    finds it through the message list API instead of sending it again."""
    async with running(stack) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(drop_after_accept_rate=1.0)
        nid = await accept(pigeon, body="lost answer")
        await eventually(lambda: len(sandbox.inbox) == 1)
        sandbox.faults.config = FaultConfig()
        details = await _view_when(pigeon, nid, "sent")
        await handled_before(pigeon)
        assert sent_bodies(sandbox) == ["lost answer"]  # never sent twice
        (message,) = [m for m in sandbox.inbox if m.body == "lost answer"]
        assert message.status_callback is not None
        assert message.status_callback.endswith(f"?n={nid}")
        assert any("attempt 1 via twilio failed" in d for d in details)
        assert any(message.sid in d for d in details)


async def test_many_lost_answers_still_give_exactly_one_message_each(stack: Stack) -> None:
    # lost answers count against the breaker: let it probe again soon
    async with running(stack, extra={"breaker_reset_seconds": 0.3}) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(drop_after_accept_rate=0.5)
        ids = [await accept(pigeon, to=f"+1415555{i:04d}", body="same body") for i in range(30)]
        for nid in ids:
            await _view_when(pigeon, nid, "sent")
        sandbox.faults.config = FaultConfig()
        await asyncio.gather(*(handled_before(pigeon, f"+1415555{i:04d}") for i in range(30)))
        recipients = [m.to for m in sandbox.inbox if m.body != "marker"]
        assert len(recipients) == 30
        assert len(set(recipients)) == 30


async def test_failover_moves_to_the_backup_provider_and_the_timeline_says_so(
    stack: Stack,
) -> None:
    async with SandboxServer(account_sid=SID, auth_token=TOKEN, seed=3) as backup:
        providers = [
            {
                "name": "primary",
                "url": "",
                "account_sid": SID,
                "auth_token": TOKEN,
                "from": "+15005550006",
            },
            {
                "name": "backup",
                "url": backup.url,
                "account_sid": SID,
                "auth_token": TOKEN,
                "from": "+15005550007",
            },
        ]
        async with running(
            stack,
            providers=providers,
            extra={"breaker_failure_threshold": 2, "breaker_reset_seconds": 0.5},
        ) as (pigeon, primary):
            primary.faults.config = FaultConfig(down=True)
            ids = [await accept(pigeon, to=f"+1415555{i:04d}") for i in range(5)]
            for nid in ids:
                details = await _view_when(pigeon, nid, "sent")
                assert any("accepted by backup" in d for d in details), details
            assert len(primary.inbox) == 0
            assert len(backup.inbox) == 5
            assert {m.from_ for m in backup.inbox} == {"+15005550007"}

            # the primary recovers: a half-open probe (one message: sends that overlap
            # it go to the backup) closes the circuit, and traffic is back on the primary
            primary.faults.config = FaultConfig()
            await asyncio.sleep(0.6)  # part of the scenario: the breaker's reset time passes
            probe = await accept(pigeon, to="+14165550000")
            await _view_when(pigeon, probe, "sent")
            later = [await accept(pigeon, to=f"+1416555{i:04d}") for i in range(1, 5)]
            for nid in later:
                await _view_when(pigeon, nid, "sent")
            assert len(primary.inbox) == 5
            assert len(backup.inbox) == 5


async def test_pacing_holds_the_rate_and_loses_nothing(stack: Stack) -> None:
    async with running(stack, extra={"sms_rate_per_second": 20, "sms_rate_burst": 1}) as (
        pigeon,
        sandbox,
    ):
        # all at once: more arrive together than one token a 50 ms can take
        ids = await asyncio.gather(*(accept(pigeon, to=f"+1415555{i:04d}") for i in range(30)))
        await eventually(lambda: len(sandbox.inbox) == 30, within=30)
        for nid in ids:
            await _view_when(pigeon, nid, "sent")
        # the sender's provider paces: sends waited for their tokens (the schedule those
        # waits follow is proven on a fake clock in tests/unit/providers/test_provider_pacing.py
        # and across processes in tests/integration/providers/test_provider_pacing_http.py)
        (failover,) = pigeon.sms_providers
        assert isinstance(failover, FailoverProvider)
        (member,) = failover.members
        paced = member.provider
        assert isinstance(paced, PacedProvider)
        assert paced.held >= 1, "no send waited for a token"
