"""Who hears of a write under tracking, and how often a node's read hits: no node is simulated.

What is modelled. Every node reads key ``k`` as a Poisson process of rate
``read_rate * share[k]``, independently of the others. Redis's default tracking mode
remembers, per key, the connections that read it since the server last invalidated it
for them, and forgets them when it sends the invalidation (at the write). So the nodes
told of a write of ``k`` are exactly those that read ``k`` since the previous write of
``k``: with a gap ``g`` between the two writes, each node did with probability
``1 - exp(-rate * g)``, and their number is Binomial(nodes, that). The first write of a
key in a run sees the gap of a stationary process (exponential at the key's write rate).

What is not. A node's local LRU does not change whom the server tells: a node that
evicted the key locally is still told (Redis cannot hear of client-side evictions), and a
node holding it has read it. So cache size changes the hit rate and the reads that reach
Redis, not the invalidations. Also left out: reads that land while the previous
invalidation is still in flight (they hit the old copy and do not register again: the
model counts them, an overcount when two writes of a key come within a delivery delay),
and the server's tracking-table limit (``tracking-table-max-keys``, 1,000,000 by default).

The hit rate is Che's approximation (Che, Tung and Wang 2002) for an LRU of ``capacity``
entries under independent reads, extended with invalidations: a read of ``k`` hits when
the node's previous read of ``k`` came within the cache's characteristic time ``T`` and
no write of ``k`` came between.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

NORMAL_FROM = 40.0
"""Binomial draws with ``n * min(p, 1 - p)`` at least this use the normal approximation."""


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw: exact by geometric skips when small, else normal."""
    if p <= 0.0 or n <= 0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    if n * p >= NORMAL_FROM:
        draw = round(rng.gauss(n * p, math.sqrt(n * p * (1.0 - p))))
        return min(n, max(0, draw))
    return _skips(rng, n, p)


def _skips(rng: random.Random, n: int, p: float) -> int:
    """Count successes by jumping geometric gaps between them: O(n p) draws, exact."""
    log_q, count, position = math.log1p(-p), 0, 0
    while True:
        position += int(math.log(1.0 - rng.random()) / log_q) + 1
        if position > n:
            return count
        count += 1


def interested(rng: random.Random, nodes: int, read_rate: float, gap: float) -> int:
    """How many of ``nodes`` read a key (at ``read_rate`` each) within ``gap`` seconds."""
    return binomial(rng, nodes, -math.expm1(-read_rate * gap))


def _occupancy(read: float, write: float, horizon: float) -> float:
    """P(a key is cached): read within ``horizon`` and not written since."""
    both = read + write
    if both <= 0.0:
        return 0.0
    return read / both * -math.expm1(-both * horizon)


def _held(reads: Sequence[float], writes: Sequence[float], horizon: float) -> float:
    """Expected entries in a cache whose characteristic time is ``horizon``."""
    return sum(_occupancy(r, w, horizon) for r, w in zip(reads, writes, strict=True))


def characteristic_time(
    reads: Sequence[float], writes: Sequence[float], capacity: int
) -> float:
    """Che's T: the horizon at which the expected entries fill ``capacity`` (inf: never full)."""
    ceiling = sum(r / (r + w) for r, w in zip(reads, writes, strict=True) if r + w > 0)
    if capacity >= ceiling:
        return math.inf
    if capacity <= 0:
        return 0.0
    low, high = 0.0, 1.0
    while _held(reads, writes, high) < capacity:
        low, high = high, high * 4.0
    for _ in range(40):
        middle = (low + high) / 2.0
        low, high = (middle, high) if _held(reads, writes, middle) < capacity else (low, middle)
    return (low + high) / 2.0


def hit_rate(
    share: Sequence[float], read_rate: float, write_rate: float, capacity: int
) -> float:
    """The share of one node's reads that hit its LRU of ``capacity`` entries (Che)."""
    if read_rate <= 0.0:
        return 0.0
    reads = [read_rate * s for s in share]
    writes = [write_rate * s for s in share]
    horizon = characteristic_time(reads, writes, capacity)
    return sum(s * _occupancy(r, w, horizon) for s, r, w in zip(share, reads, writes, strict=True))
