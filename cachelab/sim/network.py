"""The network model and the faults a simulation can inject.

Redis pub/sub delivers to one subscriber over one TCP connection, so by default
messages reach each node in publish order (FIFO), each after ``delay`` plus up to
``jitter`` seconds. Loss, duplication and reordering are injected on top:

- ``loss``: the share of deliveries that never arrive;
- ``duplicate``: the share delivered twice (the copy comes one more delay later);
- ``reorder``: the share held back by up to ``reorder_delay`` seconds, out of FIFO,
  so later messages overtake them;
- ``partitions``: ``Partition(node, start, end)``: the node's subscription is cut
  silently (a half-open connection): messages to it are dropped and nothing tells
  the node. Its commands still reach Redis.

A ``Fault`` is an event at a virtual time: ``disconnect`` (the node is told, and
resubscribes after ``duration``), ``crash`` (the node restarts empty after
``duration``; ``inf`` never), ``redis_restart`` (data and sequence lost; every
subscriber is disconnected for ``duration``) and ``garbage`` (``data`` arrives
raw at the node, as from a foreign publisher).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

FAULTS = frozenset({"disconnect", "crash", "redis_restart", "garbage"})


class Partition(NamedTuple):
    """Node ``node`` hears no message in ``[start, end)``, and is not told."""

    node: int
    start: float
    end: float


class Fault(NamedTuple):
    """At ``time``, ``kind`` happens to ``node`` for ``duration`` seconds."""

    time: float
    kind: str
    node: int = 0
    duration: float = 0.0
    data: bytes = b""


def _partitions(items: Iterable[Partition | tuple[int, float, float]]) -> tuple[Partition, ...]:
    """Partitions from tuples, checked."""
    parts = tuple(Partition(*item) for item in items)
    for part in parts:
        if not 0 <= part.start <= part.end:
            raise ValueError(f"a partition needs 0 <= start <= end: {part!r}")
    return parts


@dataclass(frozen=True)
class Network:
    """How messages travel from Redis to the subscribers."""

    delay: float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float | None = None
    partitions: tuple[Partition, ...] = field(default=())

    def __post_init__(self) -> None:
        if not (self.delay >= 0 and self.jitter >= 0):
            raise ValueError("delay and jitter must be >= 0 seconds")
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")
        if self.reorder_delay is not None and not self.reorder_delay >= 0:
            raise ValueError("reorder_delay must be >= 0 seconds")
        object.__setattr__(self, "partitions", _partitions(self.partitions))

    @property
    def holdback(self) -> float:
        """How long a reordered message may be held back (default: 5 x the worst delay)."""
        if self.reorder_delay is not None:
            return self.reorder_delay
        return 5.0 * (self.delay + self.jitter)

    def latency(self, rng: random.Random) -> float:
        """One delivery delay: ``delay`` plus a uniform share of ``jitter``."""
        return self.delay + self.jitter * rng.random() if self.jitter else self.delay

    @property
    def worst_case(self) -> float:
        """The longest a delivered message can take (duplicates and holdbacks included)."""
        extra = self.holdback if self.reorder else 0.0
        copies = 2 if self.duplicate else 1
        return copies * (self.delay + self.jitter) + extra


def check_fault(fault: Fault, nodes: int) -> None:
    """Raise ValueError for a fault the simulation cannot apply."""
    if fault.kind not in FAULTS:
        raise ValueError(f"unknown fault {fault.kind!r}; choose one of {sorted(FAULTS)}")
    if fault.kind != "redis_restart" and not 0 <= fault.node < nodes:
        raise ValueError(f"fault on node {fault.node}, but there are {nodes} nodes")
    if not (fault.time >= 0 and fault.duration >= 0) or math.isnan(fault.duration):
        raise ValueError(f"a fault needs time >= 0 and duration >= 0: {fault!r}")
