"""The provider list from PIGEON_SMS_PROVIDERS, and the provider graph built from it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pigeon.errors import ConfigurationError
from pigeon.providers.factory import (
    ProviderEntry,
    ProviderSettings,
    build_sms_provider,
    parse_providers,
)
from pigeon.providers.pacing import PacedProvider, SqliteTokenBucket
from pigeon.providers.port import supports_find_sent
from pigeon.providers.twilio import TwilioSmsProvider

PRIMARY = {
    "name": "primary",
    "url": "https://api.twilio.com/",
    "account_sid": "AC" + "1" * 32,
    "auth_token": "very-secret-token",
    "from": "+15005550006",
}
BACKUP = {**PRIMARY, "name": "backup", "url": "http://127.0.0.1:8026"}


def test_a_valid_list_gives_one_entry_per_provider_in_order() -> None:
    """Each JSON object becomes a ProviderEntry; the trailing slash of the URL goes."""
    entries = parse_providers(orjson.dumps([PRIMARY, BACKUP]).decode())
    assert [e.name for e in entries] == ["primary", "backup"]
    assert entries[0].base_url == "https://api.twilio.com"
    assert entries[0].default_from == "+15005550006"
    assert "very-secret-token" not in repr(entries[0])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not json", "is not valid JSON"),
        ('{"name": "primary"}', "must be a JSON list of provider objects, got a JSON object"),
        ("[]", "lists no provider"),
        ("[1]", "provider #1 must be a JSON object, got a JSON number"),
        ([{**PRIMARY, "url": "ftp://x"}], "provider #1 ('primary'): 'url' must be an http(s) URL"),
        ([{**PRIMARY, "url": "http://"}], "'url' must be an http(s) URL"),
        ([{**PRIMARY, "url": "http://u:p@host"}], "without credentials"),
        ([{**PRIMARY, "url": "http://host:99999"}], "invalid port"),
        ([{k: v for k, v in PRIMARY.items() if k != "auth_token"}], "is missing 'auth_token'"),
        ([{**PRIMARY, "account_sid": ""}], "'account_sid' must be a non-empty string"),
        ([{**PRIMARY, "from": 15005550006}], "'from' must be a non-empty string, got 15005550006"),
        ([{**PRIMARY, "name": "has space"}], "'name' must be 1-40 letters"),
        ([{**PRIMARY, "token": "x"}], "unknown field(s) 'token'"),
        ([PRIMARY, {**BACKUP, "name": "primary"}], "provider #2: the name 'primary' is used twice"),
    ],
)
def test_bad_lists_are_refused_with_a_precise_reason(value: object, reason: str) -> None:
    """Every way the setting can be wrong is named, with the setting and the provider."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    with pytest.raises(ConfigurationError) as caught:
        parse_providers(text)
    assert caught.value.setting == "PIGEON_SMS_PROVIDERS"
    assert reason in caught.value.reason


def test_a_wrong_auth_token_type_is_reported_without_echoing_it() -> None:
    """The auth token's value never appears in an error, even when it is the wrong type."""
    with pytest.raises(ConfigurationError) as caught:
        parse_providers(orjson.dumps([{**PRIMARY, "auth_token": ["oops-secret"]}]).decode())
    assert "oops-secret" not in str(caught.value)


def _entries() -> list[ProviderEntry]:
    return parse_providers(orjson.dumps([PRIMARY, BACKUP]).decode())


def test_the_graph_is_failover_over_twilio_adapters() -> None:
    """Unpaced settings give failover over plain Twilio adapters named after the entries."""
    provider = build_sms_provider(
        ProviderSettings(_entries(), breaker_failure_threshold=3, breaker_reset_seconds=7.0)
    )
    assert provider.name == "failover(primary,backup)"
    assert [m.provider.name for m in provider.members] == ["primary", "backup"]
    assert all(isinstance(m.provider, TwilioSmsProvider) for m in provider.members)
    breaker = provider.breaker("backup")
    assert (breaker.failure_threshold, breaker.reset_timeout_seconds) == (3, 7.0)
    assert supports_find_sent(provider)


def test_a_pacing_rate_wraps_each_adapter_in_a_shared_bucket(tmp_path: Path) -> None:
    """With a rate and a state path every provider is paced through the same SQLite file."""
    provider = build_sms_provider(
        ProviderSettings(
            _entries(),
            pacing_rate_per_second=1.0,
            pacing_burst=2,
            pacing_state_path=tmp_path / "pacing.db",
        )
    )
    paced = [m.provider for m in provider.members]
    assert all(isinstance(p, PacedProvider) for p in paced)
    assert all(
        isinstance(p, PacedProvider) and isinstance(p.bucket, SqliteTokenBucket) for p in paced
    )
    assert supports_find_sent(provider)


def test_one_entry_keeps_its_own_name() -> None:
    """A single provider still gets a breaker, and the sender sees the entry's name."""
    [primary] = parse_providers(orjson.dumps([PRIMARY]).decode())
    assert build_sms_provider(ProviderSettings([primary])).name == "primary"


def test_no_entries_is_a_configuration_error() -> None:
    """Building from an empty list names the setting."""
    with pytest.raises(ConfigurationError, match="PIGEON_SMS_PROVIDERS"):
        build_sms_provider(ProviderSettings([]))
