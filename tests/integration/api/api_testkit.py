"""Names shared by the API integration tests and their fixtures."""

from __future__ import annotations

from dataclasses import dataclass

from pigeon.domain.notification import Account

AUTH_TOKEN = "test-auth-token"
PUBLIC_URL = "https://pigeon.example.test"
#: the request size limit of the ``small_client`` app
SMALL_LIMIT = 1024
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Tenant:
    """An account with one API key."""

    account: Account
    key: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header for this tenant's key."""
        return {"Authorization": f"Bearer {self.key}"}


@dataclass(frozen=True)
class StoredEvent:
    """An event row as the store committed it: the bus log's, or the outbox's with Kafka."""

    topic: str
    key: str
    value: bytes
