"""
What a processor remembers per input partition: handled events and, for the
status processors, the latest status of each message and recipient.

Both kinds of entry expire a window after they were written (default 48 h,
covering Bandwidth's 24 h of retries), so the state does not grow forever.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Transition = Literal["advance", "unchanged", "regression", "contradiction"]

# A monotonic rank of statuses; a status never moves to a lower rank.
RANK: dict[str, int] = {
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "failed": 3,
    "read": 4,
}
TERMINAL = frozenset({"delivered", "failed"})


def transition(current: str | None, new: str) -> Transition:
    """Decide whether ``new`` may replace ``current`` as the latest status.

    The first terminal status wins: delivered after failed (or the reverse)
    contradicts Bandwidth's contract, and so does read after failed.
    """
    if current is None:
        return "advance"
    if current == new:
        return "unchanged"
    if current in TERMINAL and new in TERMINAL:
        return "contradiction"
    if current == "failed" and new == "read":
        return "contradiction"
    if RANK[new] < RANK[current]:
        return "regression"
    return "advance"


@dataclasses.dataclass
class PartitionState:
    """The dedup entries and statuses of one input partition.

    ``events`` maps an identity digest to its expiry (epoch seconds);
    ``statuses`` maps ``<messageId>/<recipient>`` to (status, expiry).
    ``output_mark`` is the output offset up to which outputs are known to
    have their dedup entries written.
    """

    events: dict[bytes, int] = dataclasses.field(default_factory=dict)
    statuses: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    output_mark: int = 0

    def seen(self, digest: bytes, now: int) -> bool:
        """Whether an unexpired entry exists for this event."""
        expiry = self.events.get(digest)
        return expiry is not None and expiry > now

    def status(self, key: str, now: int) -> str | None:
        """The latest unexpired status recorded for a key."""
        entry = self.statuses.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def purge(self, now: int) -> int:
        """Drop expired entries; returns how many were dropped."""
        stale = [d for d, expiry in self.events.items() if expiry <= now]
        for digest in stale:
            del self.events[digest]
        old = [k for k, (_, expiry) in self.statuses.items() if expiry <= now]
        for key in old:
            del self.statuses[key]
        return len(stale) + len(old)

    def __len__(self) -> int:
        return len(self.events) + len(self.statuses)
