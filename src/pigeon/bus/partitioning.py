"""Key -> partition, stable across processes, runs and backends."""

from __future__ import annotations

import zlib


def partition_for(key: str, partitions: int) -> int:
    """The partition a key always lands in (CRC32, unlike Python's salted ``hash``)."""
    return zlib.crc32(key.encode()) % partitions
