"""Pigeon as real processes on 127.0.0.1, each started and stopped by its PID.

The helpers live in :mod:`pigeon.bench` (``pigeon bench`` uses them too); this
module keeps the names the pipeline benchmark imports.
"""

from __future__ import annotations

from pigeon.bench.cluster import WORKER_GROUPS, WORKERS, Cluster
from pigeon.bench.processes import (
    HOST,
    SPAWNED,
    Proc,
    cpu_percent,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
    stop_everything,
    stop_processes,
)

__all__ = [
    "HOST",
    "SPAWNED",
    "WORKERS",
    "WORKER_GROUPS",
    "Cluster",
    "Proc",
    "cpu_percent",
    "cpu_seconds",
    "free_port",
    "machine_busy_seconds",
    "stop_everything",
    "stop_processes",
]
