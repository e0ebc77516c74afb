"""`pigeon dlq` against real processes: list, show, replay once, replay --all; bad input."""

from __future__ import annotations

import orjson
import pytest

from tests.e2e.e2e_processes import STACKS, PigeonCluster, inbox, send_sms, statuses, wait_for


def _lines(out: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stack", STACKS)
async def test_dead_letters_are_listed_shown_and_replayed_once_from_the_cli(
    cluster: PigeonCluster,
) -> None:
    key = cluster.create_api_key("e2e")
    await cluster.start(
        cluster.sandbox(),
        cluster.api(),
        *cluster.relays(),
        cluster.worker("sms-sender"),
        cluster.worker("status-projector"),
    )
    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:
        # Given a provider that rejects every send permanently (21610: unsubscribed)
        await sandbox.put("/sandbox/faults", json={"error_codes": {"21610": 1.0}})
        ids = []
        for i in range(2):
            answer = await send_sms(api, f"+1415555{i:04d}", f"dlq {i}")
            assert answer.status_code == 202
            ids.append(answer.json()["id"])
        await wait_for(
            lambda: statuses(api, ids),
            lambda s: all(d["status"] == "failed" for d in s.values()),
            within=60,
            what="both notifications failed",
        )

        def listed() -> list[dict[str, object]]:
            done = cluster.cli("dlq", "list", "--json")
            assert done.returncode == 0, done.stderr
            return _lines(done.stdout)

        async def listed_async() -> list[dict[str, object]]:
            return listed()

        letters = await wait_for(listed_async, lambda ls: len(ls) == 2, within=30, what="2 dlq")
        assert {letter["notification_id"] for letter in letters} == set(ids)
        assert all("21610" in str(letter["reason"]) for letter in letters)
        first = str(letters[0]["id"])

        shown = cluster.cli("dlq", "show", first)
        assert shown.returncode == 0, shown.stderr
        detail = orjson.loads(shown.stdout)
        assert detail["payload"]["notification_id"] == letters[0]["notification_id"]
        table = cluster.cli("dlq", "list")
        assert first in table.stdout

        # When the cause is fixed and one dead letter is replayed, twice
        await sandbox.put("/sandbox/faults", json={"error_codes": {}})
        replayed = cluster.cli("dlq", "replay", first)
        assert replayed.returncode == 0, replayed.stderr
        again = cluster.cli("dlq", "replay", first)
        assert again.returncode == 2
        assert again.stderr.startswith("pigeon: error: ")
        assert "already replayed" in again.stderr
        assert "Traceback" not in again.stderr
        # and then all the others
        rest = cluster.cli("dlq", "replay", "--all")
        assert rest.returncode == 0, rest.stderr
        assert "1 replayed, 0 skipped" in rest.stdout

        # Then each notification is delivered exactly once
        await wait_for(
            lambda: statuses(api, ids),
            lambda s: all(d["status"] == "delivered" for d in s.values()),
            within=60,
            what="both delivered after the replays",
        )
        messages = await inbox(sandbox)
        assert sorted(m["to"] for m in messages) == ["+14155550000", "+14155550001"]
        assert cluster.cli("dlq", "list").stdout.strip() == "no dead letters"
        assert len(_lines(cluster.cli("dlq", "list", "--all", "--json").stdout)) == 2
        timeline = (await statuses(api, ids[:1]))[ids[0]]["timeline"]
        assert any("replayed from dead letter" in step["detail"] for step in timeline)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("dlq", "show", "dlq_nope"), "no dead letter 'dlq_nope'"),
        (("dlq", "replay", "dlq_nope"), "no dead letter 'dlq_nope'"),
        (("dlq", "replay"), "give either a dead letter id or --all"),
        (("dlq", "replay", "dlq_x", "--all"), "give either a dead letter id or --all"),
        (("dlq", "replay", "dlq_x", "--since", "2h"), "--since goes with --all"),
        (("dlq", "list", "--since", "yesterday"), "neither an ISO 8601 time"),
    ],
)
def test_bad_dlq_commands_say_what_is_wrong_and_exit_2(
    cluster: PigeonCluster, args: tuple[str, ...], message: str
) -> None:
    cluster.cli("db", "upgrade")
    done = cluster.cli(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
