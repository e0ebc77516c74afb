"""Build an event bus from its URL: ``sqlite:///path`` or ``kafka://host:port[,host:port]``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pigeon.bus.kafka_doorbell import Doorbell
from pigeon.bus.port import EventBus
from pigeon.bus.sqlite import SqliteEventBus
from pigeon.errors import ConfigurationError


def bus_from_url(
    url: str,
    *,
    partitions: int = 8,
    lease_seconds: float = 5.0,
    poll_interval: float = 1.0,
    synchronous: str = "NORMAL",
    replication_factor: int = 1,
    idempotence: bool = True,
    session_timeout_ms: int | None = None,
    heartbeat_interval_ms: int | None = None,
    fetch_max_wait_ms: int = 500,
    awake_fetch_wait_ms: int = 10,
    doorbell: Doorbell | None = None,
    client_id: str = "pigeon",
    setting: str = "PIGEON_BUS_URL",
) -> EventBus:
    """The bus ``url`` names; a URL we cannot serve is a :class:`ConfigurationError`.

    Options that do not apply to the URL's backend are ignored: ``lease_seconds``,
    ``poll_interval`` and ``synchronous`` are SQLite's; ``replication_factor``,
    ``idempotence``, the timeouts, the ``doorbell`` and ``client_id`` are Kafka's.
    """
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
    if url.startswith("kafka://"):
        from pigeon.bus.kafka import KAFKA_EXTRA_HINT, KafkaEventBus  # needs no aiokafka

        servers = _kafka_servers(url, setting)
        if importlib.util.find_spec("aiokafka") is None:
            raise ConfigurationError(setting, KAFKA_EXTRA_HINT)

        session = session_timeout_ms or 10_000
        return KafkaEventBus(
            servers,
            default_partitions=partitions,
            replication_factor=replication_factor,
            idempotence=idempotence,
            client_id=client_id,
            session_timeout_ms=session,
            heartbeat_interval_ms=heartbeat_interval_ms or max(100, session // 3),
            fetch_max_wait_ms=fetch_max_wait_ms,
            awake_fetch_wait_ms=awake_fetch_wait_ms,
            doorbell=doorbell,
        )
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ConfigurationError(
        setting,
        f"unsupported bus URL scheme {scheme!r}; "
        "use sqlite:///path/to/pigeon.db or kafka://host:9092[,host:9092]",
    )


def _kafka_servers(url: str, setting: str) -> str:
    """``host:port,host:port`` from a ``kafka://`` URL, each entry checked."""
    servers = url.removeprefix("kafka://").rstrip("/")
    entries = [entry.strip() for entry in servers.split(",")]
    for entry in entries:
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                setting, f"{url!r}: {entry!r} is not host:port (e.g. kafka://localhost:9092)"
            )
    return ",".join(entries)
