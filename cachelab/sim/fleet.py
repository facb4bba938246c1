"""The fleet model: what writes cost the Redis servers of 1,000+ nodes, on virtual time.

The simulator (``cachelab.sim.Simulation``) runs every node's real code; that is
exact and far too slow for a thousand nodes. This model runs no node: it draws the
writes of a whole fleet (Poisson at ``write_rate``, keys by Zipf popularity), costs each
one on its shard's server (``fleet_load``) with a ``Calibration``, and derives whom each
write reaches. Modes:

- ``broadcast``: the write script publishes one message on the namespace channel;
  the server delivers it to every node (``nodes`` deliveries per write).
- ``tracking``: a plain SET (costed as one command); the server tells the nodes that
  read the key since its previous write (``fleet_interest`` says exactly what is modelled).
- ``striped``: the namespace is split over ``stripes`` hash tags on ``shards`` servers
  (sharded pub/sub); a write runs on its key's stripe's shard and reaches every node.

With ``batch=(count, seconds)`` (not with ``tracking``, where the server sends) each write
still runs its script, but its invalidation waits in a batcher and goes out in one
message per batch. A write is *applied* on a node when its message arrives there:
staleness runs from the write reaching its server (queueing, the delivery's place in
the fan-out, the network's ``delay`` plus up to ``jitter``, and any batch wait) to that
arrival; its percentiles weigh every delivery alike, from ``samples`` drawn per message.

A shard whose backlog passes ``max_backlog`` seconds is saturated: the run stops there
and says so, rather than queue forever. Utilisation is CPU seconds asked of a shard per
second, from the write rate and the measured mean cost per write (so it may pass 1).
"""

from __future__ import annotations

import math
import random
from typing import Any

from cachelab.sim.fleet_calibration import Calibration, default
from cachelab.sim.fleet_interest import hit_rate
from cachelab.sim.fleet_keys import (
    PLACEMENTS,
    Popularity,
    shard_of_keys,
    shard_shares,
)
from cachelab.sim.fleet_load import Batch
from cachelab.sim.fleet_result import FleetResult
from cachelab.sim.fleet_run import FleetRun
from cachelab.sim.network import Network

MODES = ("broadcast", "tracking", "striped")


def _positive_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 1, else ValueError naming ``name``."""
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")
    return value


def _rate(name: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite float >= 0 (> 0 with ``positive``), else ValueError."""
    ok = isinstance(value, int | float) and math.isfinite(value) and value >= 0
    if not ok or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} finite number, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def _batch(batch: Batch | tuple[Any, ...] | None, mode: str) -> Batch | None:
    """The batch option, checked (tracking cannot batch: the server sends)."""
    if batch is None:
        return None
    if mode == "tracking":
        raise ValueError("batch does not apply to mode 'tracking': the server sends its messages")
    if not isinstance(batch, tuple):
        raise ValueError(f"batch must be (count, seconds) or None, not {batch!r}")
    return Batch(*batch).checked()


class Fleet:
    """A fleet of ``nodes`` near caches on one namespace, and its Redis servers."""

    def __init__(
        self,
        nodes: int = 1000,
        keys: int = 10_000,
        *,
        write_rate: float = 100.0,
        read_rate: float = 10.0,
        zipf: float = 0.99,
        cache_size: int = 1000,
        mode: str = "broadcast",
        stripes: int = 16,
        shards: int = 1,
        placement: str = "slots",
        batch: Batch | tuple[Any, ...] | None = None,
        calibration: Calibration | None = None,
        network: Network | None = None,
        seed: int | str = 0,
        max_backlog: float = 1.0,
        samples: int = 4,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        self.nodes = _positive_int("nodes", nodes)
        self.keys = _positive_int("keys", keys)
        self.write_rate = _rate("write_rate", write_rate, positive=True)
        self.read_rate = _rate("read_rate", read_rate)
        self.zipf = _rate("zipf", zipf)
        if type(cache_size) is not int or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0, not {cache_size!r}")
        self.cache_size = cache_size
        self.mode = mode
        self.stripes = _positive_int("stripes", stripes)
        self.shards = _positive_int("shards", shards)
        if mode != "striped" and shards != 1:
            raise ValueError(f"shards={shards} needs mode 'striped' ({mode!r} uses one server)")
        if placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {placement!r}; choose one of {PLACEMENTS}")
        self.placement = placement
        self.batch = _batch(batch, mode)
        self.calibration = calibration if calibration is not None else default()
        self.network = network if network is not None else Network(delay=0.0005, jitter=0.0005)
        self.seed = seed
        self.max_backlog = _rate("max_backlog", max_backlog, positive=True)
        if type(samples) is not int or samples < 0:
            raise ValueError(f"samples must be an int >= 0, not {samples!r}")
        self.samples = samples
        self.popularity = Popularity(self.keys, self.zipf)
        self.shard_of = (shard_of_keys(self.keys, self.stripes, self.shards, placement)
                         if mode == "striped" else [0] * self.keys)

    def shard_shares(self) -> list[float]:
        """The share of the writes each shard serves (by key popularity and placement)."""
        return shard_shares(self.popularity, self.shard_of, self.shards)

    def hit_rate(self) -> float:
        """One node's local hit rate (Che's approximation; see ``fleet_interest``)."""
        return hit_rate(self.popularity.share, self.read_rate, self.write_rate, self.cache_size)

    def run(self, seconds: float = 10.0, *, detail: bool = True) -> FleetResult:
        """Simulate ``seconds`` of virtual time; ``detail=False`` skips the hit rate."""
        seconds = _rate("seconds", seconds, positive=True)
        return FleetRun(self, random.Random(self.seed)).run(seconds, detail)
