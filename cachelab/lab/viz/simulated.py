"""SimCluster: the control panel's backend on the simulator (virtual time, deterministic).

The simulator runs a whole workload at once, so the session is kept as a script
(requests, partitions) and replayed from virtual time 0 after every action. A
replay is exact, so earlier steps never change, except when the network itself
changes: moving the delay or loss sliders replays the same session under the new
network, which is a way to ask "how would this have gone with 20 % loss?".
"""

from __future__ import annotations

import math
from typing import Any

from cachelab.cluster import node_names
from cachelab.sim import Network, Partition, Request, SimResult, Simulation

_STEP = 0.001
"""Virtual seconds between two actions, on top of what the messages need to arrive."""


class SimCluster:
    """A simulated cluster driven one action at a time (a PanelBackend)."""

    def __init__(
        self,
        n: int = 3,
        *,
        strategy: str = "invalidate",
        ttl: float | None = None,
        seed: int = 0,
        delay: float = 0.002,
        loss: float = 0.0,
        **node_options: Any,
    ) -> None:
        self.n = n
        self.strategy = strategy
        self.ttl = ttl
        self.seed = seed
        self.options = dict(node_options)
        self.delay, self.loss = delay, loss
        self.now = 0.0
        self.requests: list[Request] = []
        self.partitions: list[list[Any]] = []  # [node, start, end]; end inf while cut
        self._drop_next: set[int] = set()
        self._blips: set[tuple[int, float]] = set()  # partition events that stand for a drop
        self._names = node_names(n)
        self._horizon = 0.0
        self.result = self._run()

    def _index(self, name: str) -> int:
        """A node's index."""
        return self._names.index(name)

    def _network(self) -> Network:
        """The network as the sliders and partitions describe it."""
        plain = Network(delay=self.delay, loss=self.loss)
        horizon = self.now + plain.worst_case + _STEP  # an open cut lasts past every arrival
        self._horizon = horizon
        parts = tuple(
            Partition(int(i), float(start), min(float(end), horizon))
            for i, start, end in self.partitions
        )
        return Network(delay=self.delay, loss=self.loss, partitions=parts)

    def _run(self) -> SimResult:
        """Replay the whole session from virtual time 0."""
        sim = Simulation(
            nodes=self.n,
            strategy=self.strategy,
            seed=self.seed,
            network=self._network(),
            ttl=self.ttl,
            progress=False,
            **self.options,
        )
        return sim.run(workload=list(self.requests))

    def _act(self, request: Request) -> None:
        """Add one request at the current virtual time and replay."""
        self.requests.append(request)
        self.result = self._run()

    # -- the PanelBackend protocol -------------------------------------------

    def names(self) -> list[str]:
        """The node names, in order."""
        return list(self._names)

    def write(self, node: str, key: str, value: Any) -> int:
        """Write through ``node`` now; return the version the write got."""
        i = self._index(node)
        for target in self._drop_next:  # cut just long enough to lose this one message
            end = self.now + self.delay + _STEP / 2
            self.partitions.append([target, self.now, end])
            self._blips.update({(target, self.now), (target, end)})
        self._drop_next.clear()
        self._act(Request(self.now, i, "write", key, value))
        writes = [op.version for op in self.result.history if op.op == "write" and op.key == key]
        return writes[-1] if writes else 0

    def read(self, node: str, key: str) -> Any:
        """Read ``key`` on ``node`` now; return the version read (the simulator's values)."""
        self._act(Request(self.now, self._index(node), "read", key))
        reads = [op.version for op in self.result.history if op.op == "read" and op.node == node]
        return reads[-1] if reads else None

    def set_cut(self, node: str, cut: bool) -> None:
        """Cut ``node``'s subscription silently from now on, or heal it now."""
        i = self._index(node)
        if cut and not self._cut(i):
            self.partitions.append([i, self.now, math.inf])
        elif not cut:
            for part in self.partitions:
                if part[0] == i and math.isinf(part[2]):
                    part[2] = self.now
        self.result = self._run()

    def _cut(self, i: int) -> bool:
        """Whether node ``i`` is cut off now."""
        return any(p[0] == i and math.isinf(p[2]) for p in self.partitions)

    def drop_next(self, node: str) -> None:
        """Lose the next message on its way to ``node``."""
        self._drop_next.add(self._index(node))

    def set_network(self, delay: float, loss: float) -> None:
        """Replay the session with this delay (seconds) and loss (0..1)."""
        if (delay, loss) != (self.delay, self.loss):
            self.delay, self.loss = delay, loss
            self.result = self._run()

    def settle(self) -> bool:
        """Advance virtual time past every message in flight."""
        self.now = self._horizon
        return True

    def rows(self) -> list[dict[str, Any]]:
        """One dict per node: its cache (versions only: the simulator numbers values)."""
        zero = dict.fromkeys(("hits", "misses"), 0)
        return [
            {
                "name": name,
                "cache": {k: (None, v) for k, v in self.result.caches.get(name, {}).items()},
                "stats": self.result.stats[name].to_dict() if name in self.result.stats else zero,
                "cut": self._cut(i),
            }
            for i, name in enumerate(self._names)
        ]

    def store_version(self, key: str) -> int:
        """The version of ``key``'s latest write."""
        versions = [op.version for op in self.result.history if op.key == key and op.op != "read"]
        return max(versions, default=0)

    @property
    def carries_value(self) -> bool:
        """Whether messages carry values (the update strategy)."""
        return self.result.carries_value

    @property
    def trace(self) -> list[Any]:
        """The replayed session's trace, without the partitions that stand for a drop.

        A message lost to such a stand-in is reported as ``dropped`` (on purpose), not
        as lost to a partition.
        """
        return [
            e._replace(detail="dropped") if self._dropped(e) else e
            for e in self.result.trace
            if not (e.kind == "partition" and self._artifact(self._names.index(e.node), e.t))
        ]

    def _dropped(self, e: Any) -> bool:
        """Whether a drop event is the panel's 'drop next message'."""
        if e.kind != "drop" or e.detail != "partition":
            return False
        i = self._names.index(e.node)
        return any(start <= e.since <= end and (i, start) in self._blips
                   for j, start, end in self.partitions if j == i)

    def _artifact(self, i: int, t: float) -> bool:
        """Whether a partition event only stands for a dropped message or the replay's end."""
        return (i, t) in self._blips or (t == self._horizon and self._cut(i))

    def close(self) -> None:
        """Nothing runs in the background."""
