"""Names shared by the service suites and their fixtures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.kafka_broker import KafkaBroker


@dataclass(frozen=True)
class Stack:
    """Where a test's Pigeon keeps its data and sends its events."""

    name: str
    data_dir: Path
    #: settings that put Pigeon on this stack (none for the embedded default)
    settings: dict[str, object] = field(default_factory=dict)
    broker: KafkaBroker | None = None

    @property
    def kafka(self) -> bool:
        return self.broker is not None
