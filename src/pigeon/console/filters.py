"""The console's list filters: the listing API's (status, to, since, until, metadata), from a form.

The form's values are kept as typed (``Filters.form``) so a page with a bad
value shows the form again as it was, with the error beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import urlencode

from pigeon.domain.phone import normalize_e164
from pigeon.domain.status import NotificationStatus
from pigeon.errors import ValidationError
from pigeon.store.listing import Cursor, NotificationFilter

#: the form's fields; ``metadata`` repeats (one ``key=value`` each)
FIELDS = ("status", "to", "since", "until", "account", "cursor")
_METADATA = "metadata"
_METADATA_PREFIX = "metadata."
#: the form's metadata inputs
METADATA_INPUTS = 2
STATUSES = tuple(s.value for s in NotificationStatus)


@dataclass(frozen=True)
class Filters:
    """A parsed list request: the store's filter, whose account, and where the page starts."""

    filter: NotificationFilter
    #: the account an admin picked; "" means every account (an admin) or one's own
    account: str = ""
    cursor: Cursor | None = None
    #: the raw form values, to show the form again
    form: dict[str, str] = field(default_factory=dict)
    metadata_lines: list[str] = field(default_factory=list)

    def query(self, *, cursor: str | None = None) -> str:
        """This filter as a query string (no cursor unless given)."""
        pairs = [(k, v) for k, v in self.form.items() if v and k != "cursor"]
        pairs += [(_METADATA, line) for line in self.metadata_lines if line]
        if cursor:
            pairs.append(("cursor", cursor))
        return urlencode(pairs)


def _moment(name: str, raw: str) -> datetime:
    """An ISO 8601 time; a form's ``datetime-local`` value (no zone) is taken as UTC."""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            name, f"{raw!r} is not a time; use ISO 8601 such as 2026-11-30T10:00 (UTC)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _metadata_pair(name: str, raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    key = key.strip()
    if not sep:
        raise ValidationError(name, f"{raw!r} is not key=value")
    if not key or len(key) > 64 or any(c in key for c in '"\\') or not key.isprintable():
        raise ValidationError(
            name, "a metadata key is 1 to 64 printable characters, no quote or backslash"
        )
    return key, value


def parse_filters(items: Iterable[tuple[str, str]]) -> Filters:
    """The filters in a query string's ``(name, value)`` pairs; :class:`ValidationError`
    naming the field for a bad value or an unknown parameter."""
    form: dict[str, str] = {}
    metadata: dict[str, str] = {}
    lines: list[str] = []
    for name, value in items:
        if name == _METADATA or name.startswith(_METADATA_PREFIX):
            raw = value if name == _METADATA else f"{name.removeprefix(_METADATA_PREFIX)}={value}"
            if not raw.strip():
                continue
            key, val = _metadata_pair(name, raw)
            if key in metadata:
                raise ValidationError(name, f"metadata key {key!r} is given twice")
            metadata[key] = val
            lines.append(raw)
        elif name in FIELDS:
            if name in form:
                raise ValidationError(name, "is given twice")
            form[name] = value.strip()
        else:
            raise ValidationError(
                name, "is not a filter; use status, to, since, until, metadata or account"
            )
    status = form.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationError("status", f"{status!r} is not a status; use one of {STATUSES}")
    to = form.get("to") or None
    since = _moment("since", form["since"]) if form.get("since") else None
    until = _moment("until", form["until"]) if form.get("until") else None
    if since is not None and until is not None and until <= since:
        raise ValidationError("until", "must be after 'since'")
    cursor = Cursor.decode(form["cursor"]) if form.get("cursor") else None
    return Filters(
        NotificationFilter(
            status=NotificationStatus(status) if status else None,
            to=normalize_e164(to, "to") if to else None,
            since=since,
            until=until,
            metadata=metadata,
        ),
        account=form.get("account", ""),
        cursor=cursor,
        form=form,
        metadata_lines=lines,
    )


def parse_day(name: str, raw: str | None, default: date) -> date:
    """A ``YYYY-MM-DD`` day of a form, or ``default`` when empty."""
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationError(name, f"{raw!r} is not a day; use YYYY-MM-DD") from None
