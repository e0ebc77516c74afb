"""Finding a message we may have sent, through Twilio's Messages list API.

Twilio has no idempotency key for ``POST Messages.json``, so after an answer
got lost the only way to know whether a message went out is to look for it:
``GET Messages.json?To=…&From=…&DateSent>=YYYY-MM-DD``, newest first, paged
through ``next_page_uri``. Two of Twilio's habits shape the search:

- ``DateSent`` filters by UTC *day*, so the exact moment is checked here,
  against ``date_created`` (whole seconds, RFC 2822);
- a message still ``queued`` has no ``date_sent`` yet and escapes any
  ``DateSent`` filter, so when the dated search finds nothing, the newest
  few pages for the recipient are searched again without it.

A candidate must have the same ``to``, ``from`` and body, be created at or
after the attempt started, and, where the resource tells (Pigeon's sandbox
does, Twilio does not), carry the same ``StatusCallback`` URL, which the
sender makes unique per notification. Among several, the oldest wins: that
is the first attempt's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pigeon.providers.port import SmsMessage
from pigeon.tracing import without_callback_param

#: Page size for look-ups; Twilio allows up to 1000.
LOOKUP_PAGE_SIZE = 100
#: Pages read with the DateSent filter (a day of one sender's messages to one number).
DATED_MAX_PAGES = 20
#: Pages read without it, for messages still queued (no date_sent yet).
UNDATED_MAX_PAGES = 3


def lookup_query(
    message: SmsMessage, from_number: str, sent_after: datetime, *, dated: bool
) -> dict[str, str]:
    """The first page's query; ``dated`` adds ``DateSent>=`` the UTC day of ``sent_after``."""
    query = {"To": message.to, "From": from_number, "PageSize": str(LOOKUP_PAGE_SIZE)}
    if dated:
        # aiohttp encodes this as DateSent%3E=..., exactly what Twilio's SDKs send.
        query["DateSent>"] = sent_after.astimezone(UTC).date().isoformat()
    return query


def cutoff_of(sent_after: datetime) -> datetime:
    """``sent_after`` in UTC, floored to the second Twilio's ``date_created`` is written in."""
    if sent_after.tzinfo is None:
        raise ValueError("sent_after must be timezone-aware (e.g. datetime.now(UTC))")
    return sent_after.astimezone(UTC).replace(microsecond=0)


def best_match(
    resources: Iterable[Mapping[str, Any]], message: SmsMessage, from_number: str, cutoff: datetime
) -> tuple[Mapping[str, Any], datetime] | None:
    """The oldest resource that is ``message``, sent from ``from_number`` at or after ``cutoff``."""
    best: tuple[Mapping[str, Any], datetime] | None = None
    for resource in resources:
        created = _date(resource.get("date_created"))
        if created is None or created < cutoff or not _same_message(resource, message, from_number):
            continue
        if best is None or created < best[1]:
            best = (resource, created)
    return best


def next_page_path(payload: Mapping[str, Any]) -> str | None:
    """The next page's path, if any; only a path, so our credentials never go to another host."""
    uri = payload.get("next_page_uri")
    if isinstance(uri, str) and uri.startswith("/") and not uri.startswith("//"):
        return uri
    return None


def _same_message(resource: Mapping[str, Any], message: SmsMessage, from_number: str) -> bool:
    if resource.get("to") != message.to or resource.get("from") != from_number:
        return False
    if resource.get("body") != message.body:
        return False
    direction = resource.get("direction")
    if isinstance(direction, str) and not direction.startswith("outbound"):
        return False
    callback = resource.get("status_callback")
    # Only the sandbox reports it; when present it tells two identical texts apart.
    # each attempt's URL has its own traceparent (pigeon.tracing): the rest must match
    return not (isinstance(callback, str) and message.status_callback is not None) or (
        without_callback_param(callback) == without_callback_param(message.status_callback)
    )


def _date(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
