"""Build an event bus from its URL (``sqlite:///path``; Kafka comes later)."""

from __future__ import annotations

from pathlib import Path

from pigeon.bus.port import EventBus
from pigeon.bus.sqlite import SqliteEventBus
from pigeon.errors import ConfigurationError


def bus_from_url(
    url: str,
    *,
    partitions: int = 8,
    lease_seconds: float = 5.0,
    poll_interval: float = 0.005,
    synchronous: str = "NORMAL",
    setting: str = "PIGEON_BUS_URL",
) -> EventBus:
    """The bus ``url`` names; a URL we cannot serve is a :class:`ConfigurationError`."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.name:
            raise ConfigurationError(setting, f"{url!r} names no file")
        return SqliteEventBus(
            path,
            default_partitions=partitions,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
            synchronous=synchronous,
        )
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ConfigurationError(
        setting, f"unsupported bus URL scheme {scheme!r}; use sqlite:///path/to/pigeon.db"
    )
