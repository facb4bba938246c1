"""One run of the fleet model: the event loop over writes, batch timers and shard queues.

``FleetRun`` draws the writes in time order, costs each on its shard, fires the batch
timers that fall before it, and samples when each message reaches the nodes. Its random
streams are separate (arrivals and keys, interest, network), so runs at two write rates
with one seed draw the same keys in the same order: the bisection of ``saturation``
compares like with like.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cachelab.errors import CachelabError
from cachelab.sim.fleet_interest import interested
from cachelab.sim.fleet_load import Batcher, Shard, percentile, weighted_percentile
from cachelab.sim.fleet_result import FleetResult

if TYPE_CHECKING:
    from cachelab.sim.fleet import Fleet


class Saturated(CachelabError):
    """A shard's backlog passed the fleet's ``max_backlog``: it can never catch up."""


class FleetRun:
    """The state of one run: shards, batchers, counters, samples."""

    def __init__(self, fleet: Fleet, rng: random.Random) -> None:
        self.fleet = fleet
        self.cal = fleet.calibration
        self.arrivals = random.Random(rng.random())
        self.interest = random.Random(rng.random())
        self.wire = random.Random(rng.random())
        self.shards = [Shard() for _ in range(fleet.shards)]
        self.batcher = Batcher(fleet.batch) if fleet.batch is not None else None
        self.last_write: dict[int, float] = {}
        self.writes = self.publishes = self.deliveries = 0
        self.staleness: list[tuple[float, float]] = []
        self.batch_waits: list[float] = []
        self.stopped = False  # by a saturated shard, before the end

    # -- what a write costs, and whom it reaches ---------------------------------------

    def fanout(self, key: int, t: float) -> int:
        """How many nodes a message about ``key`` written at ``t`` goes to."""
        fleet = self.fleet
        if fleet.mode != "tracking":
            return fleet.nodes
        share = fleet.popularity.share[key]
        last = self.last_write.get(key)
        if last is None:  # a stationary start: the key's previous write is Exp-distributed
            last = t - self.interest.expovariate(fleet.write_rate * share)
        self.last_write[key] = t
        return interested(self.interest, fleet.nodes, fleet.read_rate * share, t - last)

    def per_delivery(self) -> float:
        """Server seconds per message handed to one node."""
        cal = self.cal
        return (cal.invalidation_us if self.fleet.mode == "tracking" else cal.delivery_us) * 1e-6

    def write_base(self) -> float:
        """Server seconds of one write before any delivery."""
        cal = self.cal
        script = 0.0 if self.fleet.mode == "tracking" else cal.script_us
        return (cal.publish_us + script) * 1e-6

    # -- the loop ----------------------------------------------------------------------

    def run(self, seconds: float, detail: bool) -> FleetResult:
        """Draw writes up to ``seconds`` (or saturation), then flush the batches left."""
        fleet, t, end = self.fleet, 0.0, seconds
        try:
            while True:
                t += self.arrivals.expovariate(fleet.write_rate)
                if t >= seconds:
                    break
                self.fire_timers(t)
                self.write(t, fleet.popularity.pick(self.arrivals))
            self.fire_timers(math.inf)
        except Saturated:
            end, self.stopped = t, True
        return self.result(end, detail)

    def write(self, t: float, key: int) -> None:
        """One write of ``key`` reaching its shard at ``t``."""
        self.writes += 1
        shard = self.fleet.shard_of[key]
        if self.batcher is None:
            self.publish(t, shard, self.fanout(key, t), self.write_base(), (t,))
            return
        self.serve(shard, t, self.write_base())  # the script runs; its message waits
        owner = (int(self.arrivals.random() * self.fleet.nodes)
                 if self.batcher.batch.per == "writer" else -1, shard)
        full = self.batcher.add(t, owner)
        if full is not None:
            self.publish(t, shard, self.fleet.nodes, self.cal.publish_us * 1e-6, full)

    def fire_timers(self, t: float) -> None:
        """Send every batch whose timer fires by ``t``."""
        if self.batcher is None:
            return
        for when, (_, shard), writes in self.batcher.due(t):
            self.publish(when, shard, self.fleet.nodes, self.cal.publish_us * 1e-6, writes)

    def serve(self, shard: int, t: float, cost: float) -> float:
        """Queue a job on ``shard``; its start time. Raise Saturated past the backlog bound."""
        server = self.shards[shard]
        if server.backlog(t) > self.fleet.max_backlog:
            raise Saturated
        return server.serve(t, cost)

    def publish(
        self, t: float, shard: int, fanout: int, base: float, writes: Sequence[float]
    ) -> None:
        """One message at ``t`` to ``fanout`` nodes, carrying the writes made at ``writes``."""
        per = self.per_delivery()
        start = self.serve(shard, t, base + fanout * per)
        self.publishes += 1
        self.deliveries += fanout
        if self.batcher is not None:
            self.batch_waits.extend(t - w for w in writes)
        self.sample(start + base, per, fanout, writes)

    def sample(self, first: float, per: float, fanout: int, writes: Sequence[float]) -> None:
        """The staleness of a few random deliveries of a message, weighted to stand for all."""
        draws = min(self.fleet.samples, fanout)
        if not draws:
            return
        weight, rand, latency = fanout / draws, self.wire.random, self.fleet.network.latency
        for _ in range(draws):
            arrive = first + (1 + int(rand() * fanout)) * per + latency(self.wire)
            self.staleness.extend((arrive - w, weight) for w in writes)

    def result(self, end: float, detail: bool) -> FleetResult:
        """The figures of the run, to virtual time ``end``."""
        fleet, waits = self.fleet, [w for s in self.shards for w in s.waits]
        hit = fleet.hit_rate() if detail else math.nan
        use = tuple(fleet.write_rate * s.work / max(1, self.writes) for s in self.shards)
        return FleetResult(
            mode=fleet.mode, nodes=fleet.nodes, write_rate=fleet.write_rate, seconds=end,
            writes=self.writes, publishes=self.publishes, deliveries=self.deliveries,
            utilisation=use,
            queue_p50=percentile(waits, 0.5), queue_p99=percentile(waits, 0.99),
            staleness_p50=weighted_percentile(self.staleness, 0.5),
            staleness_p99=weighted_percentile(self.staleness, 0.99),
            batch_wait_p99=percentile(self.batch_waits, 0.99) if self.batch_waits else 0.0,
            saturated=self.stopped or max(use) >= 1.0,
            hit_rate=hit,
            server_reads_per_s=fleet.nodes * fleet.read_rate * (1.0 - hit) if detail else math.nan,
        )
