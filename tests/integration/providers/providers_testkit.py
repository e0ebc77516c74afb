"""Shared constants and helpers for the provider integration tests (imported by module name)."""

from __future__ import annotations

from pigeon.providers.factory import ProviderEntry
from pigeon.sandbox import SandboxServer

ACCOUNT_SID = "AC" + "4" * 32
AUTH_TOKEN = "provider-tests-token"
FROM = "+15005550006"
TO = "+14155550123"


def entry(name: str, sandbox: SandboxServer) -> ProviderEntry:
    """A provider entry pointing at ``sandbox``."""
    return ProviderEntry(
        name=name,
        base_url=sandbox.url,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        default_from=FROM,
    )
