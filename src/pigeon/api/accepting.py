"""A send request as a new notification, and the answer a ``202`` carries.

Written once: the API, and the benchmark's baselines that must validate and
answer exactly like it, build both here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pigeon.api.bodies import accepted_body
from pigeon.domain.notification import Notification


class SendRequest(Protocol):
    """What a send asks for: a :class:`~pigeon.api.schemas.SendNotification`, or a
    batch's item (:class:`~pigeon.api.schemas.BatchItem`, a plain item)."""

    @property
    def to(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def from_(self) -> str | None: ...
    @property
    def metadata(self) -> dict[str, Any] | None: ...


def new_notification(
    request: SendRequest,
    account_id: str,
    now: datetime | None = None,
    notification_id: str | None = None,
) -> Notification:
    """The notification a validated send request asks for (created ``now``, default now;
    ``notification_id``: made at ``now``, default a new one)."""
    return Notification.new_sms(
        account_id=account_id,
        to=request.to,
        body=request.body,
        from_number=request.from_,
        metadata=request.metadata,
        now=now,
        notification_id=notification_id,
    )


def accepted_answer(notification: Notification) -> dict[str, Any]:
    """The body of the ``202`` for ``notification`` (see :mod:`pigeon.api.bodies`)."""
    return accepted_body(notification)
