"""Twilio's status vocabulary, turned into :class:`~pigeon.domain.delivery.DeliveryReport`.

The anti-corruption layer for status: Twilio's callback form fields
(``MessageSid``, ``MessageStatus``, their older ``SmsSid``/``SmsStatus``
names, ``ErrorCode``, ``ErrorMessage``) and its message resource (``status``,
``error_code``, ``error_message``) are read here and nowhere else; the API's
callback route, the store and the status poller get domain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from pigeon.domain.delivery import DeliveryReport, ReportedStatus

#: the longest message id we accept (Twilio's have 34 characters; the store keeps 64)
MAX_MESSAGE_ID_CHARS = 64

_STATUSES = {
    "sent": ReportedStatus.SENT,
    "delivered": ReportedStatus.DELIVERED,
    "undelivered": ReportedStatus.UNDELIVERED,
    "failed": ReportedStatus.FAILED,
}


def _status(value: object) -> ReportedStatus:
    """queued, accepted, sending, scheduled, unknown words: nothing new (PENDING)."""
    return (
        _STATUSES.get(value, ReportedStatus.PENDING)
        if isinstance(value, str)
        else (ReportedStatus.PENDING)
    )


def _code(value: object) -> int | None:
    """ASCII digits only ("²".isdigit() is true but int() refuses it), at most 9 of them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value)
    return None


def message_id_of(params: Mapping[str, str]) -> str:
    """The message id a status callback is about ("" when it names none)."""
    return params.get("MessageSid") or params.get("SmsSid") or ""


def report_from_callback(params: Mapping[str, str]) -> DeliveryReport:
    """The report a (signed) status callback form stands for."""
    return DeliveryReport(
        provider_message_id=message_id_of(params),
        status=_status(params.get("MessageStatus") or params.get("SmsStatus") or ""),
        error_code=_code(params.get("ErrorCode") or ""),
        error=params.get("ErrorMessage", ""),
    )


def report_from_resource(message_id: str, resource: Mapping[str, Any]) -> DeliveryReport:
    """The report a fetched message resource (``GET Messages/{Sid}.json``) stands for."""
    error = resource.get("error_message")
    return DeliveryReport(
        provider_message_id=message_id,
        status=_status(resource.get("status")),
        error_code=_code(resource.get("error_code")),
        error=error if isinstance(error, str) else "",
    )


def callback_refusal(params: Mapping[str, str]) -> str | None:
    """Why a signed status callback cannot be stored (a 400), or None when it can."""
    if len(message_id_of(params)) > MAX_MESSAGE_ID_CHARS:
        # Twilio's ids have 34 characters; a longer one is none we sent, nor storable
        return f"MessageSid is longer than {MAX_MESSAGE_ID_CHARS} characters"
    for name, value in params.items():
        # no provider sends NUL, and PostgreSQL text cannot hold it: refuse, do not store
        if "\x00" in name or "\x00" in value:
            return f"status callback field {name!r} holds a NUL character (%00)"
    return None


def upgrade_stored_callback(text: str) -> str | None:
    """A status callback kept before reports existed (its raw Twilio form as JSON), as a
    stored report (:meth:`DeliveryReport.to_json`); None when ``text`` is one already.

    Used once per row when upgrading a store (migration 0004) or an intake file.
    """
    try:
        DeliveryReport.from_json(text)
    except ValueError:
        pass
    else:
        return None
    try:
        form = orjson.loads(text)
    except orjson.JSONDecodeError:
        form = {}
    if not isinstance(form, dict):
        form = {}
    fields = {str(k): v for k, v in form.items() if isinstance(v, str)}
    return report_from_callback(fields).to_json()


def downgrade_stored_report(text: str) -> str:
    """The raw form (as JSON) that versions before reports kept for a stored report."""
    report = DeliveryReport.from_json(text)
    form = {"MessageSid": report.provider_message_id, "MessageStatus": report.status.value}
    if report.error_code is not None:
        form["ErrorCode"] = str(report.error_code)
    if report.error:
        form["ErrorMessage"] = report.error
    return orjson.dumps(form).decode()
