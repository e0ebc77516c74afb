"""What a Twilio error means for delivery: retry, slow down, or give up.

Twilio answers a failed request with an HTTP status and a JSON body carrying
its own error ``code``. The code is the more precise of the two (Twilio sends
``20429`` with a 400 now and then, and ``21611`` "too many queued messages"
is a 400 that goes away by itself), so it is looked up first; the HTTP status
decides only for codes this table does not know::

    code in TWILIO_ERROR_CODES        -> that entry's kind
    HTTP 429                          -> RATE_LIMITED
    HTTP 401 / 403                    -> CREDENTIALS
    HTTP 408, 5xx                     -> TRANSIENT
    any other 4xx                     -> PERMANENT
    anything else                     -> TRANSIENT (an answer we cannot read)

The table is also what the sandbox uses to pick an HTTP status for an
injected code, so the two ends cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorKind(Enum):
    """How the sender should react to a failed send."""

    #: the provider asked us to slow down: retry after ``Retry-After`` (or backoff)
    RATE_LIMITED = "rate_limited"
    #: the provider could not do it now: retry with backoff, maybe elsewhere
    TRANSIENT = "transient"
    #: this message can never be sent as it is: fail it
    PERMANENT = "permanent"
    #: our account, credentials or sender settings are wrong: fail, and tell the operator
    CREDENTIALS = "credentials"


@dataclass(frozen=True, slots=True)
class TwilioErrorCode:
    """One documented Twilio error code (https://www.twilio.com/docs/errors/<code>)."""

    code: int
    kind: ErrorKind
    http_status: int
    meaning: str


def _table(*entries: tuple[int, ErrorKind, int, str]) -> dict[int, TwilioErrorCode]:
    return {
        code: TwilioErrorCode(code, kind, status, meaning)
        for code, kind, status, meaning in entries
    }


_R, _T, _P, _C = (
    ErrorKind.RATE_LIMITED,
    ErrorKind.TRANSIENT,
    ErrorKind.PERMANENT,
    ErrorKind.CREDENTIALS,
)

#: Codes Twilio's Messages API answers with, and what each means for a retry.
TWILIO_ERROR_CODES: dict[int, TwilioErrorCode] = _table(
    # Account and credentials: nothing a retry can fix, but not the message's fault either.
    (20003, _C, 401, "authentication failed: wrong account SID or auth token"),
    (20005, _C, 403, "the account is not active"),
    (20008, _C, 403, "test credentials cannot access this resource"),
    (20404, _C, 404, "resource not found: the account SID in the URL is probably wrong"),
    (21212, _C, 400, "the 'From' number is not a valid phone number or sender ID"),
    (21606, _C, 400, "the 'From' number cannot send SMS (not SMS-capable or not ours)"),
    (21660, _C, 400, "the 'From' number does not belong to this account"),
    (30002, _C, 400, "the account is suspended"),
    # Rate limits and queues: wait, then try again.
    (14107, _R, 429, "the SMS send rate limit was exceeded"),
    (20429, _R, 429, "too many requests"),
    (21611, _R, 400, "the 'From' number has too many messages queued"),
    (30001, _R, 429, "queue overflow: messages were sent faster than they can be queued"),
    (30022, _R, 429, "the A2P 10DLC throughput limit was exceeded"),
    # Twilio's own trouble: retry with backoff.
    (20500, _T, 500, "Twilio internal server error"),
    (20503, _T, 503, "Twilio is temporarily unavailable"),
    (30008, _T, 500, "unknown error while sending"),
    # The message or its recipient: never going to work.
    (21211, _P, 400, "the 'To' number is not a valid phone number"),
    (21265, _P, 400, "the 'To' number cannot be a short code"),
    (21266, _P, 400, "'To' and 'From' are the same number"),
    (21408, _P, 400, "no permission to send to this region (geo permissions)"),
    (21602, _P, 400, "the message body is empty"),
    (21603, _P, 400, "a 'From' number is required"),
    (21604, _P, 400, "a 'To' number is required"),
    (21608, _P, 400, "a trial account can only send to verified numbers"),
    (21609, _P, 400, "the StatusCallback URL is not valid"),
    (21610, _P, 400, "the recipient has unsubscribed (replied STOP)"),
    (21612, _P, 400, "Twilio cannot route between this 'From' and 'To'"),
    (21614, _P, 400, "the 'To' number is not a mobile number"),
    (21617, _P, 400, "the body exceeds the 1600-character limit"),
    (30003, _P, 400, "the destination handset is unreachable"),
    (30004, _P, 400, "the message was blocked"),
    (30005, _P, 400, "the destination number is unknown or no longer exists"),
    (30006, _P, 400, "the destination is a landline or unreachable carrier"),
    (30007, _P, 400, "the message was filtered by the carrier as spam"),
    (30034, _P, 400, "the 'From' number is not registered for A2P 10DLC"),
)


def classify(http_status: int, code: int | None) -> ErrorKind:
    """The kind of a non-2xx answer: Twilio's code if we know it, else the HTTP status."""
    if code is not None and code in TWILIO_ERROR_CODES:
        return TWILIO_ERROR_CODES[code].kind
    if http_status == 429:
        return ErrorKind.RATE_LIMITED
    if http_status in (401, 403):
        return ErrorKind.CREDENTIALS
    if http_status == 408 or 500 <= http_status < 600:
        return ErrorKind.TRANSIENT
    if 400 <= http_status < 500:
        return ErrorKind.PERMANENT
    return ErrorKind.TRANSIENT


def meaning_of(code: int | None) -> str | None:
    """Our one-line explanation of ``code``, for error messages and the timeline."""
    if code is None:
        return None
    entry = TWILIO_ERROR_CODES.get(code)
    return entry.meaning if entry is not None else None
