"""What the console needs besides the store, given by ``bootstrap``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pigeon.console.reads import LagRow


@dataclass(frozen=True)
class ConsoleOptions:
    """The console's wiring: where a sandbox provider may be, and where broker lag comes from."""

    #: provider base URLs that may be the development sandbox (plain http); the console
    #: shows the sandbox page for the first that answers ``GET /sandbox/health``
    sandbox_urls: tuple[str, ...] = ()
    #: Kafka: the consumer lag per group and partition (the metrics snapshot); None on
    #: the embedded stack, whose lag the console reads from the bus tables itself
    lag: Callable[[], Awaitable[Sequence[LagRow]]] | None = None
