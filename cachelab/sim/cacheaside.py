"""Cache-aside in a simulated run (``Simulation(database=True)``): the database, its loads
and writes, and the cross-node lease (a model of memcache's leases, not part of CacheNode).

A read that finds nothing in Redis reads the database and stores the value back through
the node's conditional fill. With ``lease=True`` the first reader of an absent key takes
the key's lease; the others retry Redis every ``lease_retry`` seconds.
"""

from __future__ import annotations

from cachelab.core import Ticket
from cachelab.driver import phases
from cachelab.history import WRITE, Op
from cachelab.messages import ABSENT
from cachelab.node import CacheNode
from cachelab.sim.state import RunState
from cachelab.sim.workloads import Request


class CacheAside(RunState):
    """The database side of a cache-aside run."""

    def _loaded(
        self,
        i: int,
        life: int,
        ticket: Ticket,
        start: float,
        latency: float | None,
        leased: bool,
        offset: int,
    ) -> None:
        """Redis answered a cache-aside read: a value fills; absence goes to the database."""
        node = self.nodes[i]
        if node is None or self.life[i] != life or ticket.value is not ABSENT:
            self._filled(i, life, ticket, start, offset)
            return
        if not leased:
            self._wait_for_lease(i, node, ticket, start, latency, offset)
            return
        value = self.db.get(ticket.key, 0)
        self.db_loads.append(self.now)
        self._note("db_load", node.name, ticket.key, value)
        wait = self.sim.db_latency if latency is None else latency
        self._at(self.now + wait, self._load_done, i, life, ticket, start, value, offset)

    def _load_done(
        self, i: int, life: int, ticket: Ticket, start: float, value: int, offset: int
    ) -> None:
        """The database answered: store the value through the conditional fill, then fill."""
        node = self.nodes[i]
        if node is not None and self.life[i] == life:  # a dead holder's lease runs out instead
            self.leases.pop(ticket.key, None)
            self.writer = node.name
            seq = self.store.meta().seq
            phases(node).load_external(ticket, lambda: value)
            if self.store.meta().seq != seq:  # stored: the ticket holds a version of this epoch
                offset = self.offset
        self._filled(i, life, ticket, start, offset)

    def _take_lease(self, key: str) -> bool:
        """Take the key's lease unless another reader holds a live one."""
        until = self.leases.get(key)
        if until is not None and until > self.now:
            return False
        self.leases[key] = self.now + self.sim.lease_ttl
        return True

    def _wait_for_lease(
        self,
        i: int,
        node: CacheNode,
        ticket: Ticket,
        start: float,
        latency: float | None,
        offset: int,
    ) -> None:
        """Refused the lease: release the ticket; this read and its joiners retry later."""
        # settling the ticket caches at worst the absence, which reads skip
        self._fill(node, ticket, start, offset)
        self._note("lease", node.name, ticket.key, ticket.version + offset, "wait")
        retry = self.now + self.sim.lease_retry
        for begun in (start, *self.waiters.pop(ticket, ())):
            self._at(retry, self._retry, i, self.life[i], ticket.key, begun, latency)

    def _retry(self, i: int, life: int, key: str, start: float, latency: float | None) -> None:
        """A read waiting for a lease tries again (it keeps its original start)."""
        node = self.nodes[i]
        if node is not None and self.life[i] == life:
            self._read_at(i, node, key, start, latency)

    def _db_write(self, req: Request) -> None:
        """A node writes the database; caches learn nothing until someone invalidates."""
        node = self._live(req)
        if node is None:
            return
        self.db_seq += 1
        self.db[req.key] = self.db_seq
        now = self.now
        self.history.append(Op(node.name, WRITE, req.key, now, now, self.db_seq))
        self._note("db_write", node.name, req.key, self.db_seq)
