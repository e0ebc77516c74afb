"""`pigeon accounts set-limits|show` against a running ``pigeon run``: the API follows within
a second; bad values are one clear line and change nothing."""

from __future__ import annotations

import pytest

from tests.e2e.e2e_processes import PigeonCluster, wait_for

QUOTA = "/v1/usage/quota"


@pytest.mark.timeout(120)
async def test_limits_set_on_the_command_line_reach_the_running_api(
    cluster: PigeonCluster,
) -> None:
    process = cluster.run_all_in_one()
    await cluster.start(process)
    key = cluster.create_api_key("acme")
    async with cluster.api_client(key) as api:
        assert "ratelimit-policy" not in (await api.get(QUOTA)).headers

        done = cluster.cli(
            "accounts", "set-limits", "acme", "--rate", "50", "--monthly-segments", "1000"
        )
        assert done.returncode == 0, done.stderr
        assert "rate limit: 50 requests/s (burst 50)" in done.stdout
        assert "monthly quota: 1,000 segments/month" in done.stdout

        limited = await wait_for(
            lambda: api.get(QUOTA),
            lambda r: "ratelimit-policy" in r.headers,
            within=10,
            what="the running API applies the new limits",
        )
        assert limited.headers["ratelimit-policy"] == '"rate";q=50;w=1'
        body = limited.json()
        assert body["rate_limit"] == {"requests_per_second": 50, "burst": 50}
        assert body["monthly_segments"]["quota"] == 1000

        for bad, named in (
            (["--rate", "fast"], "--rate"),
            (["--burst", "0"], "--burst"),
            (["--monthly-segments", "-3"], "--monthly-segments"),
        ):
            refused = cluster.cli("accounts", "set-limits", "acme", *bad)
            assert refused.returncode == 2, refused.stdout
            assert named in refused.stderr and "Traceback" not in refused.stderr
        unknown = cluster.cli("accounts", "set-limits", "nobody", "--rate", "1")
        assert unknown.returncode != 0 and "no account 'nobody'" in unknown.stderr
        shown = cluster.cli("accounts", "show", "acme")
        assert "rate limit: 50 requests/s" in shown.stdout  # unchanged by the refusals

        lifted = cluster.cli("accounts", "set-limits", "acme", "--rate", "none")
        assert lifted.returncode == 0 and "rate limit: none" in lifted.stdout
        await wait_for(
            lambda: api.get(QUOTA),
            lambda r: "ratelimit-policy" not in r.headers,
            within=10,
            what="the limit lifted",
        )
