"""A send request as a new notification, and the answer a ``202`` carries.

Written once: the API, and the benchmark's baselines that must validate and
answer exactly like it, build both here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pigeon.api.bodies import accepted_body
from pigeon.api.schemas import SendNotification
from pigeon.domain.notification import Notification


def new_notification(
    request: SendNotification, account_id: str, now: datetime | None = None
) -> Notification:
    """The notification a validated send request asks for (created ``now``, default now)."""
    return Notification.new_sms(
        account_id=account_id,
        to=request.to,
        body=request.body,
        from_number=request.from_,
        metadata=request.metadata,
        now=now,
    )


def accepted_answer(notification: Notification) -> dict[str, Any]:
    """The body of the ``202`` for ``notification`` (see :mod:`pigeon.api.bodies`)."""
    return accepted_body(notification)
