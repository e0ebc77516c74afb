"""Prometheus metrics: what each process records, and the one endpoint that shows them.

Off until :func:`enable` is called (the CLI does, before it builds anything:
``pigeon api`` and ``pigeon run`` always, ``pigeon worker`` when
``PIGEON_METRICS_PORT`` is set). Components ask for their pre-bound metrics
when they are built (:func:`consumer`, :func:`provider`, ...); while metrics
are off they get ``None`` and record nothing, so the hot path pays one
``is not None`` test and nothing else.

``pigeon run`` runs the API and the workers in separate processes but serves
one ``/metrics``: every process writes its values into files of one folder
(prometheus-client's multiprocess mode) and the API process sums them up when
scraped. Gauges that describe the whole deployment rather than one process
(consumer lag, dead letters waiting, the outbox) are measured at scrape time
by the process that serves ``/metrics`` (:mod:`pigeon.metrics.state`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    disable_created_metrics,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from pigeon.metrics.bound import (
    CommitMetrics,
    ConsumerMetrics,
    NotificationMetrics,
    ProviderMetrics,
)
from pigeon.metrics.families import Families, make_families

__all__ = [
    "CommitMetrics",
    "ConsumerMetrics",
    "Families",
    "NotificationMetrics",
    "ProviderMetrics",
    "commits",
    "consumer",
    "current",
    "enable",
    "forget_process",
    "notifications",
    "provider",
    "registry",
]


@dataclass(frozen=True)
class _Enabled:
    families: Families
    #: what the endpoint renders (this process's own, or every process's files)
    registry: CollectorRegistry
    multiprocess_dir: Path | None


_enabled: _Enabled | None = None


def enable(multiprocess_dir: Path | None = None) -> Families:
    """Start recording metrics in this process; call before building components.

    ``multiprocess_dir``: write values into files there, shared with the other
    processes of one ``pigeon run`` (the folder must exist). Idempotent: a
    process keeps the mode of its first call.
    """
    global _enabled  # noqa: PLW0603 - one set of families per process, by design
    if _enabled is not None:
        return _enabled.families
    # no *_created series: Prometheus reads resets from the values (prometheus-client leaves
    # these few functions unannotated)
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=True)
    if multiprocess_dir is not None:
        # prometheus-client reads the folder from its own variable when it opens a
        # value's file; the value class is normally chosen at its import, which in a
        # forked child (pigeon.prefork) happened long before: choose it now
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiprocess_dir)
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        MultiProcessCollector(registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
        families = make_families(None)
    else:
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        families = make_families(registry)
    _enabled = _Enabled(families, registry, multiprocess_dir)
    return families


def current() -> Families | None:
    """This process's families, or ``None`` while metrics are off."""
    return _enabled.families if _enabled is not None else None


def registry() -> CollectorRegistry | None:
    """What this process's endpoint shows, or ``None`` while metrics are off."""
    return _enabled.registry if _enabled is not None else None


def forget_process(pid: int) -> None:
    """A process of this ``pigeon run`` ended: drop its live gauges (breaker states);
    its counters and histograms still count."""
    if _enabled is not None and _enabled.multiprocess_dir is not None:
        mark_process_dead(pid, str(_enabled.multiprocess_dir))  # type: ignore[no-untyped-call]


def consumer(group: str, topic: str) -> ConsumerMetrics | None:
    """The metrics of one consumer runner, or ``None`` while metrics are off."""
    families = current()
    return ConsumerMetrics(families, group, topic) if families is not None else None


def provider(name: str) -> ProviderMetrics | None:
    """The metrics of one SMS provider, or ``None`` while metrics are off."""
    families = current()
    return ProviderMetrics(families, name) if families is not None else None


def commits(name: str) -> CommitMetrics | None:
    """The metrics of one group committer, or ``None`` while metrics are off."""
    families = current()
    return CommitMetrics(families, name) if families is not None else None


def notifications(channel: str = "sms") -> NotificationMetrics | None:
    """Counters of notifications accepted and finished, or ``None`` while metrics are off."""
    families = current()
    return NotificationMetrics(families, channel) if families is not None else None
