"""Retention of the webhook delivery log: finished deliveries go with their notifications.

Run by the webhook-dispatcher worker at ``PIGEON_RETENTION_INTERVAL_SECONDS``: a
delivered or failed delivery made more than ``PIGEON_NOTIFICATION_RETENTION_DAYS``
ago is deleted, in chunks of ``PIGEON_RETENTION_CHUNK_ROWS`` (one short
transaction each). Pending ones stay, however old.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from pigeon.domain.events import utcnow
from pigeon.services.periodic import Periodic


class DeliveryPurge(Protocol):
    """What the pass needs of the store."""

    async def purge_deliveries(self, before: datetime, limit: int) -> int: ...


class WebhookRetention(Periodic):
    """Deletes old finished deliveries until :meth:`request_stop`."""

    WHAT = "webhook delivery retention"
    CATCH_ALL = True  # housekeeping: an unexpected error is logged, the worker goes on

    def __init__(
        self, store: DeliveryPurge, *, keep: timedelta, interval_seconds: float, chunk_rows: int
    ) -> None:
        super().__init__(interval_seconds)
        self._store = store
        self._keep = keep
        self._chunk = chunk_rows

    async def sweep(self) -> int:
        """One pass; returns how many deliveries were deleted."""
        before = utcnow() - self._keep
        deleted = 0
        while not self._stopping.is_set():
            chunk = await self._store.purge_deliveries(before, self._chunk)
            deleted += chunk
            if chunk < self._chunk:
                break
        return deleted
