"""The faults a simulated run injects: partitions, disconnects, crashes, Redis restarts,
garbage (see ``network.py`` for what each one is)."""

from __future__ import annotations

import math
from collections.abc import Callable

from cachelab.driver import phases
from cachelab.history import DELETE, Op
from cachelab.listener import listener_of
from cachelab.sim.network import Fault
from cachelab.sim.state import RunState


class Faults(RunState):
    """Schedule the run's faults, and what each does to nodes, links and the store."""

    def _schedule_faults(self) -> None:
        """Queue the partitions and faults."""
        for part in self.net.partitions:
            if not 0 <= part.node < self.n:
                raise ValueError(f"partition of node {part.node}, but there are {self.n} nodes")
            self._at(part.start, self._partition, part.node, 1)
            self._at(part.end, self._partition, part.node, -1)
        actions: dict[str, Callable[[Fault], None]] = {
            "disconnect": self._disconnect,
            "crash": self._crash,
            "redis_restart": self._redis_restart,
            "garbage": self._garbage,
        }
        for fault in self.sim.faults:
            self._at(fault.time, actions[fault.kind], fault)

    def _partition(self, i: int, change: int) -> None:
        """Cut or heal node ``i``'s subscription, silently."""
        self.cut[i] += change
        self._note("partition", self.names[i], detail="start" if change > 0 else "heal")
        if self.streaming and not self.cut[i] and self.nodes[i] is not None and self.up[i]:
            self._catch_up(i, replay=False)  # the stuck read returns all it missed, in order

    def _disconnect(self, fault: Fault) -> None:
        """The subscription breaks and the node is told; it resubscribes later."""
        self._break(fault.node, fault.duration)

    def _break(self, i: int, duration: float) -> None:
        """Break node ``i``'s subscription for ``duration`` seconds."""
        node = self.nodes[i]
        if node is None or not self.up[i]:
            return
        self.up[i] = False
        self.conn[i] += 1
        if self.tracking is not None:  # a lost redirect: the node tracks anew on new connections
            self.tracking.forget(i)
        phases(node).disconnected()
        if math.isfinite(duration):
            self._at(self.now + duration, self._reconnect, i, self.life[i], self.conn[i])

    def _reconnect(self, i: int, life: int, conn: int) -> None:
        """Resubscribe, unless the node died or broke again meanwhile."""
        node = self.nodes[i]
        if node is None or self.life[i] != life or self.conn[i] != conn:
            return
        self.up[i] = True
        phases(node).subscribed(False)
        if self.streaming:
            self._catch_up(i, replay=True)

    def _crash(self, fault: Fault) -> None:
        """The node dies with its cache and its reads in flight."""
        i = fault.node
        if self.nodes[i] is None:
            return
        self.nodes[i] = None
        self.life[i] += 1
        self.conn[i] += 1
        self.held[self.names[i]].clear()
        self._note("crash", self.names[i])
        if math.isfinite(fault.duration):
            self._at(self.now + fault.duration, self._restart, i, self.life[i])

    def _restart(self, i: int, life: int) -> None:
        """A fresh node with the same name and an empty cache."""
        if self.life[i] != life:
            return
        self.up[i] = True
        self.nodes[i] = self._start(i)
        self._note("restart", self.names[i])

    def _redis_restart(self, fault: Fault) -> None:
        """Redis loses its data and sequence; every subscriber is disconnected.

        The subscribers lose their connections (under the old offset), then the
        offset grows past every version so far and the lost keys are recorded as
        deleted (see the module docstring).
        """
        old = self.offset
        new = old + self.store.meta().seq + 1
        self._note("redis_restart", "redis", version=new)
        for i in range(self.n):
            self._break(i, fault.duration)
        lost = self.store.restart()
        self.leases.clear()
        self.offset, self.restarted = new, True
        for node in self.nodes:
            if node is not None:
                self.held[node.name] = dict.fromkeys(node.snapshot(), old) | self.held[node.name]
        if not self.database:
            now, version = self.now, self.offset
            self.history.extend(Op("redis", DELETE, key, now, now, version) for key in lost)

    def _garbage(self, fault: Fault) -> None:
        """Raw bytes reach the node as if published by someone else."""
        node = self.nodes[fault.node]
        if node is not None:
            self._note("garbage", node.name, detail=repr(fault.data[:40]))
            listener_of(node).receive(fault.data)
