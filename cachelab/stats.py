"""NodeStats: a snapshot of one node's counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class NodeStats:
    """What a node has done since it started. ``messages_ignored`` = invalid + outdated + forged.

    ``entries`` and ``suspects`` are gauges (entries trusted, entries awaiting repair);
    the rest count events. ``suspected`` counts entries that lost trust (after a gap,
    reconnect or reset); ``repair_checks`` the round trips that revalidated them;
    ``repair_kept`` and ``repair_dropped`` their outcomes. ``messages_forged`` counts
    messages with a bad tag, or claiming numbers or incarnations the store never issued;
    ``resets`` the times the store's counter was found to have started again.
    """

    COUNTERS: ClassVar[tuple[str, ...]] = (
        "writes",
        "invalidations_received",
        "messages_invalid",
        "messages_outdated",
        "stale_fills_rejected",
        "uncached_reads",
        "flushes",
        "gaps",
        "reconnects",
        "disconnects",
        "messages_forged",
        "resets",
        "suspected",
        "repair_checks",
        "repair_kept",
        "repair_dropped",
        "replays",
        "restored",
        "hook_errors",
    )

    hits: int = 0
    misses: int = 0
    entries: int = 0
    evictions: int = 0
    writes: int = 0
    invalidations_received: int = 0
    messages_invalid: int = 0
    messages_outdated: int = 0
    stale_fills_rejected: int = 0
    uncached_reads: int = 0
    flushes: int = 0
    gaps: int = 0
    reconnects: int = 0
    disconnects: int = 0
    messages_forged: int = 0
    resets: int = 0
    suspected: int = 0
    repair_checks: int = 0
    repair_kept: int = 0
    repair_dropped: int = 0
    replays: int = 0
    restored: int = 0
    hook_errors: int = 0
    suspects: int = 0

    @classmethod
    def of(
        cls,
        counts: dict[str, int],
        hits: int,
        misses: int,
        evictions: int,
        entries: int,
        suspects: int = 0,
    ) -> NodeStats:
        """Build a snapshot from a node's counters and its local store's."""
        return cls(
            hits=hits,
            misses=misses,
            evictions=evictions,
            entries=entries,
            suspects=suspects,
            **counts,
        )

    @property
    def hit_rate(self) -> float:
        """Hits over lookups; 0.0 before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    @property
    def messages_ignored(self) -> int:
        """Messages that changed nothing: malformed, foreign, oversized, outdated or forged."""
        return self.messages_invalid + self.messages_outdated + self.messages_forged

    def to_dict(self) -> dict[str, Any]:
        """All counters plus ``hit_rate`` and ``messages_ignored``, for tables and plots."""
        return {
            **asdict(self),
            "hit_rate": self.hit_rate,
            "messages_ignored": self.messages_ignored,
        }
