"""Batch sends committing at once (PostgreSQL gives them writers of their own): every
notification stored once, and an idempotency key claimed by exactly one of them."""

from __future__ import annotations

import asyncio

from pigeon.domain.notification import Notification
from pigeon.store.idempotency import IdempotentRequest
from pigeon.store.sql_store import BATCH_WRITERS, SqlStore


async def test_concurrent_batches_store_everything_once_and_share_a_key_once(
    store: SqlStore,
) -> None:
    account = (await store.ensure_account("acme")).id
    batches = BATCH_WRITERS * 2

    def batch(index: int) -> list[tuple[Notification, IdempotentRequest | None]]:
        keyed = Notification.new_sms(account_id=account, to="+14155550100", body=f"b{index}")
        claim = IdempotentRequest(account, "shared-key", "same-hash", f'{{"id":"{keyed.id}"}}')
        plain = [
            (
                Notification.new_sms(account_id=account, to="+14155550101", body=f"b{index}-{i}"),
                None,
            )
            for i in range(50)
        ]
        return [(keyed, claim), *plain]

    sent = [batch(i) for i in range(batches)]
    answers = await asyncio.gather(*(store.accept_batch(items) for items in sent))

    winners = [b for b, answer in enumerate(answers) if answer[0] is None]
    assert len(winners) == 1  # the key's one notification; the others got its record
    (winner,) = winners
    for b, answer in enumerate(answers):
        assert answer[1:] == [None] * 50  # unkeyed items are stored in every batch
        if b != winner:
            record = answer[0]
            assert record is not None
            assert record.notification_id == sent[winner][0][0].id
    for b, items in enumerate(sent):
        for i, (notification, _) in enumerate(items):
            found = await store.get_view(account, notification.id)
            assert (found is not None) == (i > 0 or b == winner)
