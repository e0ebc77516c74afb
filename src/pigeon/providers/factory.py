"""Building the SMS provider from settings: Twilio adapters, paced, behind failover.

The object graph for ``[primary, backup]`` is::

    FailoverProvider(primary, backup)            breakers, ordered failover
      ├─ PacedProvider ─ TwilioSmsProvider "primary"   (pacing only if rate > 0)
      └─ PacedProvider ─ TwilioSmsProvider "backup"

Pacing sits under failover so each provider's sender number keeps its own
rate, and all of them share one SQLite state file (one row per bucket).

:func:`parse_providers` reads the list from one environment variable
(``PIGEON_SMS_PROVIDERS``), a JSON list such as::

    [{"name": "primary", "url": "https://api.twilio.com", "account_sid": "AC…",
      "auth_token": "…", "from": "+14155550100"},
     {"name": "backup", "url": "http://127.0.0.1:8026", …}]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from pigeon.errors import ConfigurationError
from pigeon.providers.failover import FailoverProvider
from pigeon.providers.pacing import PacedProvider
from pigeon.providers.port import SmsProvider
from pigeon.providers.twilio import TwilioSmsProvider

PROVIDERS_SETTING = "PIGEON_SMS_PROVIDERS"

_FIELDS = ("name", "url", "account_sid", "auth_token", "from")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """One Twilio-compatible provider: where it is, who we are there, who we send as."""

    name: str
    base_url: str
    account_sid: str
    auth_token: str = field(repr=False)
    default_from: str


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Everything :func:`build_sms_provider` needs; ``pacing_rate_per_second`` 0 means unpaced."""

    entries: Sequence[ProviderEntry]
    timeout_seconds: float = 10.0
    max_connections: int = 100
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 30.0
    pacing_rate_per_second: float = 0.0
    pacing_burst: int = 1
    pacing_state_path: Path | None = None
    #: where an operator fixes an entry; shown in credential errors
    settings_name: str = PROVIDERS_SETTING


def build_sms_provider(settings: ProviderSettings) -> FailoverProvider:
    """The provider the SMS sender uses; nothing connects until ``start()``.

    Always a :class:`FailoverProvider`, even over one entry: its breaker is
    what stops a dead provider from costing a timeout per message. Its
    ``name`` is the entry's name for one entry, and every receipt names the
    entry that sent.
    """
    if not settings.entries:
        raise ConfigurationError(settings.settings_name, "at least one provider is required")
    members: list[SmsProvider] = []
    for entry in settings.entries:
        provider: SmsProvider = TwilioSmsProvider(
            base_url=entry.base_url,
            account_sid=entry.account_sid,
            auth_token=entry.auth_token,
            default_from=entry.default_from,
            timeout_seconds=settings.timeout_seconds,
            name=entry.name,
            max_connections=settings.max_connections,
            settings_hint=f"the {entry.name!r} entry of {settings.settings_name}",
        )
        if settings.pacing_rate_per_second > 0:
            provider = PacedProvider(
                provider,
                rate_per_second=settings.pacing_rate_per_second,
                burst=settings.pacing_burst,
                state_path=settings.pacing_state_path,
                default_from=entry.default_from,
            )
        members.append(provider)
    return FailoverProvider(
        members,
        failure_threshold=settings.breaker_failure_threshold,
        reset_timeout_seconds=settings.breaker_reset_seconds,
    )


def parse_providers(text: str, *, setting: str = PROVIDERS_SETTING) -> list[ProviderEntry]:
    """Read the provider list from JSON, or raise :class:`ConfigurationError` saying what is wrong.

    Auth tokens never appear in the error messages.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(setting, f"is not valid JSON ({exc})") from None
    if not isinstance(value, list):
        raise ConfigurationError(
            setting,
            f"must be a JSON list of provider objects, got a JSON {_json_type(value)}; "
            'e.g. [{"name": "primary", "url": "https://api.twilio.com", "account_sid": "AC…", '
            '"auth_token": "…", "from": "+14155550100"}]',
        )
    if not value:
        raise ConfigurationError(setting, "lists no provider; at least one is required")
    entries: list[ProviderEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        entry = _entry(setting, index, item)
        if entry.name in seen:
            raise ConfigurationError(
                setting, f"provider #{index + 1}: the name {entry.name!r} is used twice"
            )
        seen.add(entry.name)
        entries.append(entry)
    return entries


def _entry(setting: str, index: int, item: Any) -> ProviderEntry:
    where = f"provider #{index + 1}"
    if not isinstance(item, dict):
        raise ConfigurationError(
            setting, f"{where} must be a JSON object, got a JSON {_json_type(item)}"
        )
    if isinstance(item.get("name"), str) and item["name"]:
        where += f" ({item['name']!r})"
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise ConfigurationError(
            setting,
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected exactly {', '.join(map(repr, _FIELDS))}",
        )
    for key in _FIELDS:
        if key not in item:
            raise ConfigurationError(setting, f"{where} is missing {key!r}")
        if not isinstance(item[key], str) or not item[key].strip():
            shown = "a non-empty string" if key == "auth_token" else repr(item[key])
            raise ConfigurationError(
                setting, f"{where}: {key!r} must be a non-empty string, got {shown}"
            )
    name, url = item["name"], item["url"]
    if not _NAME.fullmatch(name):
        raise ConfigurationError(
            setting,
            f"{where}: 'name' must be 1-40 letters, digits, '_', '.' or '-' "
            f"(it is shown on timelines and keys the pacing bucket), got {name!r}",
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            setting,
            f"{where}: 'url' must be an http(s) URL such as https://api.twilio.com, got {url!r}",
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(
            setting,
            f"{where}: 'url' must be a base URL without credentials, query or fragment, "
            f"got {parts.scheme}://{parts.hostname}…",
        )
    try:
        parts.port  # noqa: B018  # raises ValueError on a port out of range
    except ValueError:
        raise ConfigurationError(setting, f"{where}: 'url' has an invalid port: {url!r}") from None
    return ProviderEntry(
        name=name,
        base_url=url.rstrip("/"),
        account_sid=item["account_sid"].strip(),
        auth_token=item["auth_token"],
        default_from=item["from"].strip(),
    )


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
