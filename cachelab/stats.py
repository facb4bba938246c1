"""NodeStats: a snapshot of one node's counters."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

Z95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at ``k = 0``
    or ``k = n``: 0 of 100 gives (0, 0.037). With no trials it is (0, 1).
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, not k={k!r}, n={n!r}")
    if n == 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class NodeStats:
    """What a node has done since it started. ``messages_ignored`` = invalid + outdated + forged.

    ``entries`` and ``suspects`` are gauges (entries trusted, entries awaiting repair);
    the rest count events. ``suspected`` counts entries that lost trust (after a gap,
    reconnect or reset); ``repair_checks`` the round trips that revalidated them;
    ``repair_kept`` and ``repair_dropped`` their outcomes. ``messages_forged`` counts
    messages with a bad tag, or claiming numbers or incarnations the store never issued;
    ``resets`` the times the store's counter was found to have started again.

    With ``verify=`` (see ``cachelab.sampler``): ``sampled`` hits were chosen for
    verification, ``verified`` of them judged against the store, ``verified_stale`` found
    stale. ``verify_skipped`` were checked when the node no longer held the key (not
    judged); ``verify_dropped`` were never checked (queue full, or their round trip failed:
    ``verify_errors`` counts those round trips). ``stale_estimate`` and ``stale_interval``
    (95 %, Wilson) estimate the stale fraction of this node's hits. ``fences_failed``
    counts strict writes whose closing round trip failed (the write itself took effect).
    ``gaps_deferred`` counts messages that skipped numbers, left to the next marker to
    decide (``gaps`` counts the gaps found true).
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
        "fences_failed",
        "gaps_deferred",
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
    fences_failed: int = 0
    gaps_deferred: int = 0
    suspects: int = 0
    sampled: int = 0
    verified: int = 0
    verified_stale: int = 0
    verify_skipped: int = 0
    verify_dropped: int = 0
    verify_errors: int = 0

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

    @property
    def stale_estimate(self) -> float:
        """The stale fraction of verified hits; 0.0 before the first (see ``stale_interval``)."""
        return self.verified_stale / self.verified if self.verified else 0.0

    @property
    def stale_interval(self) -> tuple[float, float]:
        """The 95 % Wilson interval of the stale fraction of hits; (0, 1) before any."""
        return wilson(self.verified_stale, self.verified)

    def to_dict(self) -> dict[str, Any]:
        """All counters plus ``hit_rate``, ``messages_ignored`` and the staleness estimate
        (``stale_estimate``, ``stale_low``, ``stale_high``), for tables and plots."""
        low, high = self.stale_interval
        return {
            **asdict(self),
            "hit_rate": self.hit_rate,
            "messages_ignored": self.messages_ignored,
            "stale_estimate": self.stale_estimate,
            "stale_low": low,
            "stale_high": high,
        }


@dataclass(frozen=True)
class LagStats:
    """A node's measured propagation lag: the round trips of its heartbeat (seconds).

    ``count`` beats came back, taking ``total`` seconds in all (both only grow); ``recent``
    holds the last ones (up to 64), oldest first. See ``CacheNode.propagation_lag`` for
    what one round trip measures.
    """

    count: int = 0
    total: float = 0.0
    recent: tuple[float, ...] = ()

    @property
    def last(self) -> float | None:
        """The latest round trip; None before the first."""
        return self.recent[-1] if self.recent else None

    @property
    def max(self) -> float | None:
        """The longest of the recent round trips; None before the first."""
        return max(self.recent) if self.recent else None
