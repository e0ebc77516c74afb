"""What ended a consumer-group member's waits for news, counted (both backends).

An idle member waits, fetching nothing, until something tells it to look: a
ring (a commit here or in another process, a settled batch, a new partition),
a retry falling due, its slow fallback timer, or ``interrupt()``. The counts
tell a ring from the fallback timer, so tests (and operators) can see that a
message was picked up because it was announced, not because a timer ran out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Wakes:
    """What ended a member's waits: a ring is told apart from the fallback timer."""

    rung: int = 0  #: a ring (or a new assignment, a settled batch, the doorbell lost or back)
    due: int = 0  #: a retry fell due
    fallback: int = 0  #: the fallback timer ran out without a ring
    interrupted: int = 0  #: interrupt(): the runner is stopping
