"""Issue 4's chaos test: 2,000 SMS, a 30 % failing provider, kill -9 of the sender and API."""

from __future__ import annotations

import pytest

from tests.e2e.chaos import run_chaos
from tests.e2e.e2e_processes import PigeonCluster


@pytest.mark.timeout(600)
async def test_chaos_every_accepted_sms_is_delivered_once_or_failed_with_a_reason(
    cluster: PigeonCluster,
) -> None:
    report = await run_chaos(cluster, count=2000)
    print(report)
    assert report.sender_kills == 3
    assert report.api_kills == 1
    assert report.accepted == 2000  # clients retried with their keys until answered
    assert report.stuck == 0
    assert report.duplicates == 0
    assert report.not_in_inbox == 0
    assert report.delivered + report.failed + report.other_final == report.accepted
    assert report.sent_once == report.delivered + report.other_final
    assert report.failed_without_reason == 0
    assert report.usage_messages == report.accepted
    assert report.usage_segments == report.expected_segments
    assert report.dead_letters_match_failed
    assert report.failed > 0  # the 1 % permanent rejections really happened
