"""The numbers the notebooks state, computed from the code or the run they describe.

A sentence that quotes a figure typed by hand goes stale the day the code changes; the
notebooks format these instead (and ``tests/test_prose.py`` checks them).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence

from cachelab.bus import Heartbeat, SubscriptionSilent
from cachelab.history import Op
from cachelab.node import CacheNode
from cachelab.sim.workloads import Request

CONFIDENCE_RULE = 3.0
"""With no failure in n trials, a 95 % upper bound on the failure rate is about 3/n."""


def heartbeat_interval() -> float:
    """A CacheNode's default heartbeat interval, in seconds."""
    default = inspect.signature(CacheNode).parameters["heartbeat"].default
    return float(default)


def heartbeat_detection(interval: float, tick: float = 0.001) -> float:
    """Seconds until the heartbeat notices a subscription gone deaf just after an echo."""
    now = [0.0]
    beat = Heartbeat(interval, timer=lambda: now[0])
    beat.restart()
    while now[0] < 100 * interval:
        try:
            beat.due()  # a beat is sent when due; a deaf subscription never echoes it
        except SubscriptionSilent:
            return now[0]
        now[0] += tick
    raise AssertionError("the heartbeat never noticed")  # pragma: no cover


def supported_nines(trials: int) -> float:
    """The nines a sample with no failure supports at 95 %: ``log10(n / 3)`` (0 if tiny)."""
    return max(0.0, math.log10(trials / CONFIDENCE_RULE)) if trials > 0 else 0.0


def hit_rate_between(history: Iterable[Op], start: float, end: float) -> float:
    """The share of reads that started in ``[start, end)`` and were served locally."""
    reads = [op for op in history if op.op == "read" and start <= op.start < end]
    return sum(bool(op.hit) for op in reads) / len(reads) if reads else 0.0


def request_gaps(workload: Sequence[Request]) -> list[float]:
    """For every request after the first of its key on its node: the time since that one."""
    last: dict[tuple[int, str], float] = {}
    gaps = []
    for req in sorted(workload, key=lambda r: r.time):
        seen = last.get((req.node, req.key))
        if seen is not None:
            gaps.append(req.time - seen)
        last[(req.node, req.key)] = req.time
    return gaps


def mean_key_gap(workload: Sequence[Request], keys: int) -> float:
    """Seconds between two requests of one key on one node, averaged over keys and nodes."""
    duration = max(r.time for r in workload) - min(r.time for r in workload)
    nodes = len({r.node for r in workload})
    return duration * nodes * keys / len(workload)


def hottest_gap(workload: Sequence[Request]) -> float:
    """Seconds between two requests of the most requested key on its busiest node, on average."""
    times: dict[tuple[int, str], list[float]] = {}
    for req in workload:
        times.setdefault((req.node, req.key), []).append(req.time)
    busiest = max(times, key=lambda pair: len(times[pair]))
    hot = sorted(times[busiest])
    return (hot[-1] - hot[0]) / (len(hot) - 1) if len(hot) > 1 else math.inf
