"""Compaction of the SQLite event log: old rows every group has read are deleted.

Like Kafka's ``retention.ms``, with one difference: a row is deleted only when
every consumer group that reads its topic has passed it. The groups of a topic
are the ones the application says read it (``readers``: a worker that has not
started yet still gets every event) and any other with a position, a lease or
a member on it (``bus_offsets``, ``bus_leases``, ``bus_members``); a group
without a position on a partition has read nothing there (position 0). Rows
of a topic no group reads (say ``sms.dead.unrecorded``) are kept.

Rows a pending retry points at (``bus_retries.log_id``) are kept too. The
retry holds its own copy of the message, so the row is not needed for the
retry itself; it stays so that :func:`redelivery_horizon` can date it.

Ids are ``AUTOINCREMENT``: deleting rows, even all of them, never lets an id
be used again, so a group's position never points backwards.

Each call deletes at most ``limit`` rows in the caller's transaction and reads
the positions in that same transaction, under the write lock, so a position
that moved on meanwhile is seen, and one chunk never holds the lock for long.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Collection, Mapping

#: topic -> the consumer groups that must read every event of it
Readers = Mapping[str, Collection[str]]

#: the groups of each topic (a group known anywhere on a topic reads all its partitions)
_GROUPS = (
    "SELECT topic, grp FROM bus_offsets UNION SELECT topic, grp FROM bus_leases "
    "UNION SELECT topic, grp FROM bus_members"
)
_ROWS = (
    "SELECT id, created_at FROM bus_log WHERE topic = ? AND partition = ? AND id <= ? ORDER BY id"
)
_FIRST_UNREAD = (
    "SELECT created_at FROM bus_log WHERE topic = ? AND partition = ? AND id > ? "
    "ORDER BY id LIMIT 1"
)


def read_by_all(conn: sqlite3.Connection, readers: Readers) -> dict[tuple[str, int], int]:
    """``(topic, partition) -> the highest log id every group of the topic has passed``.

    Topics no group reads are left out: none of their rows is read by all.
    """
    groups: dict[str, set[str]] = defaultdict(set)
    for topic, names in readers.items():
        groups[topic].update(names)
    for topic, group in conn.execute(_GROUPS):
        groups[topic].add(group)
    partitions = dict(conn.execute("SELECT name, partitions FROM bus_topics"))
    positions = {
        (group, topic, int(partition)): int(position)
        for group, topic, partition, position in conn.execute(
            "SELECT grp, topic, partition, position FROM bus_offsets"
        )
    }
    return {
        (topic, partition): min(positions.get((group, topic, partition), 0) for group in members)
        for topic, members in groups.items()
        for partition in range(int(partitions.get(topic, 0)))
    }


def _retried(conn: sqlite3.Connection) -> set[int]:
    return {int(row[0]) for row in conn.execute("SELECT log_id FROM bus_retries")}


def compact_chunk(conn: sqlite3.Connection, before: float, limit: int, readers: Readers) -> int:
    """Delete up to ``limit`` rows read by every group and created before ``before``.

    ``before`` is a unix time. Returns how many rows were deleted; fewer than
    ``limit`` means nothing more is due now.
    """
    retried = _retried(conn)
    doomed: list[tuple[int]] = []
    for (topic, partition), passed in sorted(read_by_all(conn, readers).items()):
        if passed <= 0:
            continue
        rows = conn.execute(_ROWS, (topic, partition, passed))
        try:
            for log_id, created_at in rows:
                # ids and times rise together (up to a writer's wait for the lock):
                # the first row inside the window ends this partition's turn
                if created_at >= before or len(doomed) >= limit:
                    break
                if log_id not in retried:
                    doomed.append((log_id,))
        finally:
            rows.close()
        if len(doomed) >= limit:
            break
    conn.executemany("DELETE FROM bus_log WHERE id = ?", doomed)
    return len(doomed)


def redelivery_horizon(conn: sqlite3.Connection, readers: Readers) -> float | None:
    """When the oldest row some group may still be given was written (unix time).

    That is the first row past some group's position, or a row a pending retry
    points at; None when every group has read everything and nothing waits to
    be retried. An event older than this cannot reach any group again from the
    log (a dead-letter replay publishes it anew: see the store's retention).
    """
    oldest: list[float] = []
    for (topic, partition), passed in read_by_all(conn, readers).items():
        row = conn.execute(_FIRST_UNREAD, (topic, partition, passed)).fetchone()
        if row is not None:
            oldest.append(float(row[0]))
    row = conn.execute(
        "SELECT min(l.created_at) FROM bus_retries r JOIN bus_log l ON l.id = r.log_id"
    ).fetchone()
    if row is not None and row[0] is not None:
        oldest.append(float(row[0]))
    return min(oldest, default=None)
