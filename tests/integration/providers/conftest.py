"""Two real sandboxes on 127.0.0.1 (primary and backup), stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from providers_testkit import ACCOUNT_SID, AUTH_TOKEN

from pigeon.sandbox import SandboxServer


@pytest.fixture
async def primary() -> AsyncIterator[SandboxServer]:
    """The preferred provider's sandbox."""
    async with SandboxServer(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, seed=1) as server:
        yield server


@pytest.fixture
async def backup() -> AsyncIterator[SandboxServer]:
    """The second provider's sandbox."""
    async with SandboxServer(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, seed=2) as server:
        yield server
