"""Provider status callbacks (Twilio's ``MessageStatus``) as domain events."""

from __future__ import annotations

from collections.abc import Mapping

from pigeon.domain.events import Event, SmsDelivered, SmsFailed, SmsSent, SmsUndelivered


def event_from_twilio_status(
    account_id: str,
    notification_id: str,
    params: Mapping[str, str],
    provider: str = "twilio",
    attempt: int = 0,
) -> Event | None:
    """The event a Twilio status callback stands for; None for interim statuses.

    ``provider`` and ``attempt``: the provider and the attempt that sent the message
    (the journal knows them; the callback does not say).
    """
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    code = params.get("ErrorCode") or ""
    # ASCII digits only ("²".isdigit() is true but int() refuses it), and short
    # enough for the event envelope's 64-bit integers; Twilio's codes have 5 digits
    error_code = int(code) if code.isascii() and code.isdigit() and len(code) <= 9 else None
    a, n = account_id, notification_id
    if status == "sent":
        return SmsSent(
            account_id=a,
            notification_id=n,
            attempt=attempt,
            provider=provider,
            provider_message_id=sid,
        )
    if status == "delivered":
        return SmsDelivered(account_id=a, notification_id=n, provider_message_id=sid)
    if status == "undelivered":
        return SmsUndelivered(
            account_id=a,
            notification_id=n,
            provider_message_id=sid,
            error_code=error_code,
            error=params.get("ErrorMessage", ""),
        )
    if status == "failed":
        return SmsFailed(
            account_id=a,
            notification_id=n,
            reason=f"provider reported failed (error {code or 'unknown'})",
            error_code=error_code,
        )
    return None  # queued, accepted, sending: nothing we do not know already
