"""The server side of the fleet model: one FIFO queue per shard, and invalidation batchers.

Redis runs commands on one thread, so a shard is a single queue: a job that arrives at
``t`` starts at ``max(t, when the previous job ends)`` and holds the server for its CPU
cost. A publish is one job; its delivery ``k`` (1-based) leaves the server at
``start + base + k * per_delivery``: one event per publish, never one per delivery.

A batcher holds invalidations and sends one message per ``size`` of them, or when the
oldest has waited ``seconds``, whichever comes first (Hazelcast's near cache: 100 and
10 s by default). ``per="writer"`` gives each writing node its own batcher per shard;
``per="shard"`` one batcher per shard for everyone (as if the write script queued them).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

BATCH_PER = ("writer", "shard")


class Batch(NamedTuple):
    """Send one message per ``size`` invalidations or every ``seconds``, whichever first."""

    size: int = 100
    seconds: float = 10.0
    per: str = "writer"

    def checked(self) -> Batch:
        """This batch, or ValueError naming what is wrong."""
        if type(self.size) is not int or self.size < 1:
            raise ValueError(f"batch size must be a positive int, not {self.size!r}")
        if not (isinstance(self.seconds, int | float) and 0 < self.seconds < math.inf):
            raise ValueError(f"batch seconds must be a positive number, not {self.seconds!r}")
        if self.per not in BATCH_PER:
            raise ValueError(f"batch per must be one of {BATCH_PER}, not {self.per!r}")
        return self


@dataclass
class Shard:
    """One single-threaded server: its queue and the CPU it was asked for."""

    free: float = 0.0  # when the job in hand ends
    work: float = 0.0  # CPU seconds demanded so far
    waits: list[float] = field(default_factory=list)

    def serve(self, t: float, cost: float) -> float:
        """Queue a job arriving at ``t``; return when it starts."""
        start = self.free if self.free > t else t
        self.free = start + cost
        self.work += cost
        self.waits.append(start - t)
        return start

    def backlog(self, t: float) -> float:
        """Seconds of work queued ahead of a job arriving at ``t``."""
        return self.free - t if self.free > t else 0.0


@dataclass
class Pending:
    """Invalidations waiting in one batcher: the times of their writes."""

    deadline: float
    writes: list[float] = field(default_factory=list)


class Batcher:
    """Every batcher of a run, and the deadlines at which their timers fire."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self._pending: dict[tuple[int, int], Pending] = {}
        self._timers: list[tuple[float, tuple[int, int]]] = []

    def add(self, t: float, owner: tuple[int, int]) -> list[float] | None:
        """Hold the invalidation of a write at ``t``; the batch's writes if it is now full."""
        pending = self._pending.get(owner)
        if pending is None:
            pending = self._pending[owner] = Pending(t + self.batch.seconds)
            heapq.heappush(self._timers, (pending.deadline, owner))
        pending.writes.append(t)
        if len(pending.writes) < self.batch.size:
            return None
        del self._pending[owner]  # its timer finds nothing and fires no message
        return pending.writes

    def due(self, t: float) -> Iterator[tuple[float, tuple[int, int], list[float]]]:
        """Batches whose timer fires at or before ``t``: (when, owner, writes), in time order."""
        while self._timers and self._timers[0][0] <= t:
            deadline, owner = heapq.heappop(self._timers)
            pending = self._pending.get(owner)
            if pending is not None and pending.deadline == deadline:
                del self._pending[owner]
                yield deadline, owner, pending.writes


def weighted_percentile(samples: Sequence[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile of ``(value, weight)`` samples (nan when there are none)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    total = sum(weight for _, weight in ordered)
    running = 0.0
    for value, weight in ordered:
        running += weight
        if running >= q * total:
            return value
    return ordered[-1][0]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of plain values (nan when there are none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
