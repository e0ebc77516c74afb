"""Dead letters end to end: recorded, listed, replayed once, over the admin API too."""

from __future__ import annotations

import httpx
from services_testkit import Stack
from test_sms_sender_service import accept, handled_before, running, sent_bodies, wait_status
from tests.support import eventually

from pigeon.bootstrap import Pigeon
from pigeon.sandbox.faults import FaultConfig
from pigeon.store.dead_letters import DeadLetterView


async def _wait_status(pigeon: Pigeon, nid: str, status: str) -> None:
    await wait_status(pigeon, nid, status)


async def _letters(pigeon: Pigeon, count: int) -> list[DeadLetterView]:
    letters: list[DeadLetterView] = []

    async def recorded() -> bool:
        nonlocal letters
        letters = await pigeon.store.dead_letters(include_replayed=True)
        return len(letters) >= count

    await eventually(recorded)
    return letters


async def test_exhausted_retries_are_recorded_and_a_replay_sends_once(stack: Stack) -> None:
    async with running(stack, max_attempts=2) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(down=True)
        nid = await accept(pigeon)
        await _wait_status(pigeon, nid, "failed")
        (letter,) = await _letters(pigeon, 1)
        assert letter.notification_id == nid
        assert letter.consumer_group == "sms-sender"
        assert letter.original_topic == "sms.requested"
        assert "retries exhausted after 2 attempts" in letter.reason
        assert letter.last_error and "503" in letter.last_error
        assert letter.replayable

        sandbox.faults.config = FaultConfig()
        assert await pigeon.store.replay_dead_letter(letter.id) == nid
        await eventually(lambda: len(sandbox.inbox) == 1)
        await _wait_status(pigeon, nid, "sent")  # callbacks go nowhere in this harness

        # a second replay of the same dead letter is refused and sends nothing
        try:
            await pigeon.store.replay_dead_letter(letter.id)
        except Exception as exc:  # ConflictError
            assert "already replayed" in str(exc)
        else:
            raise AssertionError("replaying twice was accepted")
        await handled_before(pigeon)
        assert sent_bodies(sandbox) == ["hello"]

        account = await pigeon.store.ensure_account("acme")
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        details = [e.detail for e in view.timeline]
        assert any(d.startswith(f"replayed from dead letter {letter.id}") for d in details)
        # every attempt has its own timeline step: two failed ones, then the replayed one
        for number in (1, 2, 3):
            assert f"attempt {number} via twilio" in details


async def test_a_permanent_rejection_is_dead_lettered_and_replay_all_requeues_it(
    stack: Stack,
) -> None:
    async with running(stack) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(error_codes={"21610": 1.0})  # unsubscribed
        first = await accept(pigeon, to="+14155550123")
        second = await accept(pigeon, to="+14155550124")
        await _wait_status(pigeon, first, "failed")
        await _wait_status(pigeon, second, "failed")
        letters = await _letters(pigeon, 2)
        assert {letter.notification_id for letter in letters} == {first, second}
        assert all("21610" in letter.reason for letter in letters)

        sandbox.faults.config = FaultConfig()
        report = await pigeon.store.replay_dead_letters()
        assert sorted(n for _, n in report.replayed) == sorted([first, second])
        assert report.skipped == []
        await eventually(lambda: len(sandbox.inbox) == 2)
        again = await pigeon.store.replay_dead_letters()
        assert again.replayed == [] and again.skipped == []  # nothing left to replay
        await handled_before(pigeon, to="+14155550123")
        await handled_before(pigeon, to="+14155550124")
        assert len(sent_bodies(sandbox)) == 2


async def test_admin_routes_list_show_and_replay_with_an_admin_key_only(stack: Stack) -> None:
    async with running(stack, max_attempts=1) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(down=True)
        nid = await accept(pigeon)
        await _wait_status(pigeon, nid, "failed")
        (letter,) = await _letters(pigeon, 1)
        _, admin_key = await pigeon.store.create_api_key("ops", admin=True)
        _, tenant_key = await pigeon.store.create_api_key("acme")
        admin = {"Authorization": f"Bearer {admin_key}"}
        transport = httpx.ASGITransport(app=pigeon.api())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            denied = await http.get(
                "/v1/admin/dead-letters", headers={"Authorization": f"Bearer {tenant_key}"}
            )
            assert denied.status_code == 403
            assert denied.headers["Content-Type"] == "application/problem+json"
            assert (await http.get("/v1/admin/dead-letters")).status_code == 401

            listed = (await http.get("/v1/admin/dead-letters", headers=admin)).json()
            assert [item["id"] for item in listed] == [letter.id]
            shown = (await http.get(f"/v1/admin/dead-letters/{letter.id}", headers=admin)).json()
            assert shown["payload"]["notification_id"] == nid
            assert shown["payload"]["type"] == "SmsRequested"
            missing = await http.get("/v1/admin/dead-letters/dlq_nope", headers=admin)
            assert missing.status_code == 404
            bad_since = await http.get("/v1/admin/dead-letters?since=yesterday", headers=admin)
            assert bad_since.status_code == 422

            sandbox.faults.config = FaultConfig()
            replay = await http.post(f"/v1/admin/dead-letters/{letter.id}/replay", headers=admin)
            assert replay.status_code == 202
            assert replay.json() == {"dead_letter_id": letter.id, "notification_id": nid}
            twice = await http.post(f"/v1/admin/dead-letters/{letter.id}/replay", headers=admin)
            assert twice.status_code == 409
            await eventually(lambda: len(sandbox.inbox) == 1)
            bulk = (await http.post("/v1/admin/dead-letters/replay", headers=admin)).json()
            assert bulk == {"replayed": [], "skipped": []}
        await handled_before(pigeon)
        assert sent_bodies(sandbox) == ["hello"]
