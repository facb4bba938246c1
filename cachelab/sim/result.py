"""What a run produces: the history, the checker's report and the trace (``SimResult``)."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cachelab.check import Report, check, stale_reads
from cachelab.history import READ, Op
from cachelab.sim.trace import Caches, TraceEvent, caches_at
from cachelab.stats import NodeStats


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector, as ``timeit`` does.

    A run keeps several tuples per operation alive to its end (history, trace,
    queue); the collector would rescan them again and again, about 30 % of a run
    on the benchmark. They hold no cycles, so nothing is lost by waiting.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True, eq=False)
class SimResult:
    """What a run produced: the history, the checker's report, and the trace.

    ``report`` and ``trace`` are computed on first use (the checker costs about a
    fifth of a run), then kept.
    """

    history: list[Op]
    raw_trace: list[TraceEvent] = field(repr=False)  # before the checker marks stale reads
    nodes: tuple[str, ...]
    caches: Caches
    stats: dict[str, NodeStats]
    strategy: str
    carries_value: bool
    ttl: float | None
    store_reads: tuple[float, ...]
    store_checks: tuple[tuple[float, int], ...]  # repair round trips: (time, keys checked)
    db_loads: tuple[float, ...]
    delivered: int
    dropped: int
    skipped: int
    end: float

    @cached_property
    def report(self) -> Report:
        """The consistency checker's report on the history."""
        with paused_gc():
            return check(self.history, messages=self.delivered, nodes=len(self.nodes))

    @cached_property
    def trace(self) -> tuple[TraceEvent, ...]:
        """Every event in time order, with the stale reads marked ``stale_read``."""
        stale = self.report.stale_reads
        with paused_gc():
            return mark_stale(list(self.raw_trace), self.history, stale)

    def caches_at(self, index: int) -> Caches:
        """Each node's cache (``key -> version``) after the first ``index`` trace events."""
        return caches_at(
            self.trace, index, self.nodes, carries_value=self.carries_value, ttl=self.ttl
        )

    def metrics(self, window: float = 0.01) -> dict[str, Any]:
        """The report's dict plus the simulation's own counts (peaks per ``window`` s)."""
        return {
            **self.report.to_dict(),
            "store_reads": len(self.store_reads),
            "repair_checks": len(self.store_checks),
            "repair_keys": sum(keys for _, keys in self.store_checks),
            "round_trips": len(self.store_reads) + len(self.store_checks),
            "db_loads": len(self.db_loads),
            "peak_store_reads": peak(self.store_reads, window),
            "peak_db_loads": peak(self.db_loads, window),
            "delivered": self.delivered,
            "dropped": self.dropped,
            "skipped": self.skipped,
            "stale_fills_rejected": sum(s.stale_fills_rejected for s in self.stats.values()),
        }


def peak(times: Iterable[float], window: float) -> int:
    """The most ``times`` falling in one fixed window of ``window`` seconds."""
    if not window > 0:
        raise ValueError(f"window must be positive, not {window!r}")
    counts: dict[int, int] = {}
    for t in times:
        slot = math.floor(t / window)
        counts[slot] = counts.get(slot, 0) + 1
    return max(counts.values(), default=0)


def mark_stale(trace: list[TraceEvent], history: list[Op], count: int) -> tuple[TraceEvent, ...]:
    """The trace with the checker's stale reads as ``stale_read`` events.

    Reads appear in the history and the trace in the same order, so the n-th read
    event of the trace is the n-th read of the history.
    """
    if count:
        stale = {op for op, _ in stale_reads(history)}  # equal ops are equally stale
        reads = (op for op in history if op.op == READ)
        wanted = {n for n, op in enumerate(reads) if op in stale}
        n = 0
        for pos, event in enumerate(trace):
            if event.kind == "read":
                if n in wanted:
                    trace[pos] = event._replace(kind="stale_read")
                n += 1
    return tuple(trace)
