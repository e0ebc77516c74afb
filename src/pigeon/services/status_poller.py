"""The status poller: asks the provider about messages whose final callback never came.

Status callbacks are fire-and-forget on the provider's side: if our API was
down when the provider called back, the notification would stay ``sent``
forever. This loop (run by each sms-sender worker) looks for notifications
that have been ``sent`` for a while, fetches their status from the provider
that sent them, and feeds a final status through the same path a callback
takes - forward-only and idempotent, so a late real callback changes nothing.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Protocol

from pigeon.domain.delivery import DeliveryReport
from pigeon.domain.events import utcnow
from pigeon.errors import PigeonError
from pigeon.providers.port import StatusLookup
from pigeon.services.periodic import Periodic

log = logging.getLogger(__name__)

#: a message still not final this long after sending is left alone
GIVE_UP_AFTER = timedelta(days=3)


class StaleSent(Protocol):
    """What the poller needs of the store: who is stuck, and where reports go."""

    async def stale_sent(
        self, *, older_than: datetime, newer_than: datetime, limit: int = 200
    ) -> list[tuple[str, str, str]]:
        """``(notification, provider message id, provider)`` still ``sent`` in that window."""
        ...

    async def record_delivery_report(self, report: DeliveryReport) -> bool:
        """Apply (or keep) a provider's report, as a status callback would be."""
        ...


class StatusPoller(Periodic):
    """Runs until :meth:`request_stop`; one sweep every ``interval_seconds``."""

    WHAT = "status poll"

    def __init__(
        self,
        store: StaleSent,
        provider: StatusLookup,
        *,
        after_seconds: float,
        interval_seconds: float,
        batch: int = 200,
    ) -> None:
        super().__init__(interval_seconds)
        self._store = store
        self._provider = provider
        self._after = timedelta(seconds=after_seconds)
        self._batch = batch
        #: notification -> when we last asked (so one is asked at most every `after`)
        self._asked: dict[str, float] = {}
        self.recovered = 0

    async def sweep(self) -> int:
        """One pass; returns how many final statuses were recovered."""
        now = utcnow()
        stale = await self._store.stale_sent(
            older_than=now - self._after, newer_than=now - GIVE_UP_AFTER, limit=self._batch
        )
        clock = time.monotonic()
        recovered = 0
        for notification_id, message_id, provider in stale:
            if clock - self._asked.get(notification_id, -1e18) < self._after.total_seconds():
                continue
            self._asked[notification_id] = clock
            try:
                report = await self._provider.fetch_status(message_id, provider)
            except PigeonError as exc:
                log.info(
                    "could not fetch a message's status",
                    extra={
                        "notification_id": notification_id,
                        "provider": provider,
                        "provider_message_id": message_id,
                        "error": str(exc),
                    },
                )
                continue
            if report.is_final:
                await self._store.record_delivery_report(report)
                recovered += 1
        if len(self._asked) > 100_000:  # forget old entries; they would be asked again
            self._asked.clear()
        if recovered:
            log.info("recovered %d final status(es) whose callbacks were lost", recovered)
        self.recovered += recovered
        return recovered
