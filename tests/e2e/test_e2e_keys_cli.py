"""`pigeon keys` against a running API process: list, revoke, rotate; bad input."""

from __future__ import annotations

import orjson
import pytest

from tests.e2e.e2e_processes import STACKS, PigeonCluster, wait_for

USAGE = "/v1/usage?from=2026-11-01&to=2026-11-02"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", STACKS)
async def test_keys_are_listed_revoked_and_rotated_and_the_running_api_follows(
    cluster: PigeonCluster,
) -> None:
    key = cluster.create_api_key("acme")
    await cluster.start(cluster.api())
    async with cluster.api_client(key) as api:
        assert (await api.get(USAGE)).status_code == 200  # the API process caches the key

        listed = cluster.cli("keys", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        (row,) = [orjson.loads(line) for line in listed.stdout.splitlines()]
        assert (row["account"], row["prefix"], row["active"]) == ("acme", key[:8], True)
        assert key not in listed.stdout

        rotated = cluster.cli("keys", "rotate", row["id"])
        assert rotated.returncode == 0, rotated.stderr
        new_key = rotated.stdout.strip().splitlines()[-1].removeprefix("new api key: ")
        assert new_key.startswith("pgn_") and new_key != key

        # the API process, which had the old key cached, refuses it within a second
        await wait_for(
            lambda: api.get(USAGE), lambda r: r.status_code == 401, within=5, what="old key refused"
        )
        async with cluster.api_client(new_key) as rotated_api:
            assert (await rotated_api.get(USAGE)).status_code == 200

        again = cluster.cli("keys", "revoke", row["id"])
        assert again.returncode == 2
        assert "already revoked" in again.stderr and "Traceback" not in again.stderr
        unknown = cluster.cli("keys", "revoke", "key_nope")
        assert unknown.returncode == 2 and "no API key 'key_nope'" in unknown.stderr
        table = cluster.cli("keys", "list", "--account", "acme")
        assert table.returncode == 0
        assert table.stdout.count("revoked") == 1 and table.stdout.count("active") == 1
