"""Workloads: plain iterables of ``Request``s, sorted by time.

A request is ``Request(time, node, op, key, value=None, latency=None)``:

- ``time``: virtual seconds; a workload must not go back in time.
- ``node``: the index of the node that issues it (ignored for ``external``).
- ``op``: ``read``, ``write`` (a set), ``delete``, ``invalidate``, or ``external``
  (a writer that is not a node: it writes the store directly and publishes nothing).
- ``value``: what a write stores; None lets the simulation number the writes.
- ``latency``: overrides the slow phase of this one request: the store round trip
  of a read, or the database read of a cache-aside read (a deliberately slow fill).

In a cache-aside run (``Simulation(database=True)``) ``write`` writes the database,
``invalidate`` drops the key from Redis and the nodes, and a ``read`` that finds
nothing in Redis loads the database; ``delete`` and ``external`` do not apply.

Write your own as any iterable, or mix these generators. All randomness comes
from a ``random.Random`` seeded with ``seed``, so a workload is reproducible.
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import Any, NamedTuple

OPS = frozenset({"read", "write", "delete", "invalidate", "external"})


class Request(NamedTuple):
    """One operation of a workload: at ``time``, node ``node`` does ``op`` on ``key``."""

    time: float
    node: int
    op: str
    key: str
    value: Any = None
    latency: float | None = None


class Bursts(NamedTuple):
    """For the first ``length`` seconds of every ``every`` seconds, the rate is ``factor`` x."""

    every: float = 1.0
    length: float = 0.1
    factor: float = 10.0


KeyPicker = Callable[[random.Random], str]


def key_names(keys: int) -> list[str]:
    """``k0`` .. ``k{keys-1}``."""
    if type(keys) is not int or keys < 1:
        raise ValueError(f"keys must be a positive int, not {keys!r}")
    return [f"k{i}" for i in range(keys)]


def zipf_picker(keys: int, skew: float) -> KeyPicker:
    """Pick key ``i`` with probability proportional to ``1 / (i + 1) ** skew``."""
    if skew < 0:
        raise ValueError(f"skew must be >= 0, not {skew!r}")
    names = key_names(keys)
    cumulative = list(accumulate(1.0 / (i + 1) ** skew for i in range(keys)))
    total, last = cumulative[-1], keys - 1

    def pick(rng: random.Random) -> str:
        return names[min(bisect(cumulative, rng.random() * total), last)]

    return pick


def hot_picker(keys: int, hot: str, share: float) -> KeyPicker:
    """Pick ``hot`` with probability ``share``, else one of ``keys`` others uniformly."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], not {share!r}")
    names = key_names(keys)

    def pick(rng: random.Random) -> str:
        return hot if rng.random() < share else names[int(rng.random() * keys)]

    return pick


def mix(
    ops: int,
    nodes: int,
    pick: KeyPicker,
    *,
    read_ratio: float = 0.95,
    rate: float = 10_000.0,
    bursts: Bursts | None = None,
    external: float = 0.0,
    seed: int | str = 0,
) -> Iterator[Request]:
    """``ops`` Poisson arrivals at ``rate``/s on random nodes: reads, else writes.

    ``external`` is the share of writes done by the external writer.
    """
    _check_mix(ops, nodes, read_ratio, rate, external)
    return _arrivals(ops, nodes, pick, read_ratio, rate, bursts, external, random.Random(seed))


def _arrivals(
    ops: int,
    nodes: int,
    pick: KeyPicker,
    read_ratio: float,
    rate: float,
    bursts: Bursts | None,
    external: float,
    rng: random.Random,
) -> Iterator[Request]:
    """The generator behind ``mix`` (its arguments are already checked).

    Requests are built with ``tuple.__new__``, which skips the NamedTuple's Python-level
    constructor: generation is a tenth of a simulation's cost per request.
    """
    t, new, expo, rand = 0.0, tuple.__new__, rng.expovariate, rng.random
    for _ in range(ops):
        t += expo(rate if bursts is None else _rate_at(t, rate, bursts))
        node = int(rand() * nodes)
        key = pick(rng)
        if rand() < read_ratio:
            yield new(Request, (t, node, "read", key, None, None))
        elif external and rand() < external:
            yield new(Request, (t, -1, "external", key, None, None))
        else:
            yield new(Request, (t, node, "write", key, None, None))


def _check_mix(ops: int, nodes: int, read_ratio: float, rate: float, external: float) -> None:
    """Validate the parameters of ``mix``."""
    if type(ops) is not int or ops < 0:
        raise ValueError(f"ops must be a non-negative int, not {ops!r}")
    if type(nodes) is not int or nodes < 1:
        raise ValueError(f"nodes must be a positive int, not {nodes!r}")
    if not (0.0 <= read_ratio <= 1.0 and 0.0 <= external <= 1.0):
        raise ValueError("read_ratio and external must be in [0, 1]")
    if not rate > 0:
        raise ValueError(f"rate must be positive, not {rate!r}")


def _rate_at(t: float, rate: float, bursts: Bursts | None) -> float:
    """The arrival rate at time ``t``: raised during a burst."""
    if bursts is not None and t % bursts.every < bursts.length:
        return rate * bursts.factor
    return rate


def zipf(
    ops: int, nodes: int, *, keys: int = 1000, skew: float = 0.99, **options: Any
) -> Iterator[Request]:
    """Zipf-distributed keys (``skew`` 0 is uniform; ~1 is typical of web caches).

    The defaults (skew 0.99, 95 % reads, 1000 keys) are YCSB's workload B, "read mostly".
    """
    return mix(ops, nodes, zipf_picker(keys, skew), **options)


def uniform(ops: int, nodes: int, *, keys: int = 1000, **options: Any) -> Iterator[Request]:
    """Every key equally likely."""
    return mix(ops, nodes, zipf_picker(keys, 0.0), **options)


def hot_key(
    ops: int, nodes: int, *, hot: str = "hot", share: float = 0.5, keys: int = 1000, **options: Any
) -> Iterator[Request]:
    """One hot key takes ``share`` of all operations; the rest are uniform."""
    return mix(ops, nodes, hot_picker(keys, hot, share), **options)


def merge(*workloads: Iterable[Request]) -> Iterator[Request]:
    """Merge time-sorted workloads into one (ties keep the argument order)."""
    return heapq.merge(*workloads, key=_time)


def _time(request: Request) -> float:
    return request.time


def every(
    period: float, start: float, end: float, node: int, op: str, key: str
) -> Iterator[Request]:
    """The same request every ``period`` seconds in ``[start, end)`` (a polling reader)."""
    if not period > 0:
        raise ValueError(f"period must be positive, not {period!r}")
    n = 0
    while start + n * period < end:
        yield Request(start + n * period, node, op, key)
        n += 1
