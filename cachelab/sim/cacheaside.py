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
from cachelab.sim.reads import Reads, SimRead
from cachelab.sim.workloads import Request


class CacheAside(Reads):
    """The database side of a cache-aside run."""

    def _load_database(self, read: SimRead, ticket: Ticket) -> None:
        """Redis had nothing: load the database (the plan's loader), or wait for the lease."""
        node = read.node
        if not read.leased:
            self._wait_for_lease(read, ticket)
            return
        value = self.db.get(ticket.key, 0)
        self.db_loads.append(self.now)
        self._note("db_load", node.name, ticket.key, value)
        wait = self.sim.db_latency if read.latency is None else read.latency
        self._at(self.now + wait, self._load_done, read, value)

    def _load_done(self, read: SimRead, value: int) -> None:
        """The database answered: the plan stores the value through the conditional fill,
        then fills (a dead holder's lease runs out instead)."""
        if not self._alive(read):
            return
        self.leases.pop(read.key, None)
        self.writer = read.node.name
        self._advance(read, value)

    def _take_lease(self, key: str) -> bool:
        """Take the key's lease unless another reader holds a live one."""
        until = self.leases.get(key)
        if until is not None and until > self.now:
            return False
        self.leases[key] = self.now + self.sim.lease_ttl
        return True

    def _wait_for_lease(self, read: SimRead, ticket: Ticket) -> None:
        """Refused the lease: release the ticket; this read and its joiners retry later."""
        node = read.node
        # settling the ticket caches at worst the absence, which reads skip
        self.since, self.fill_offset = read.start, read.offset
        phases(node).fill(ticket)
        self.since, self.fill_offset = -1.0, None
        read.plan.close()
        self._note("lease", node.name, ticket.key, ticket.version + read.offset, "wait")
        retry = self.now + self.sim.lease_retry
        for waiting in (read, *self.waiters.pop(ticket, ())):
            waiting.plan.close()
            self._at(retry, self._retry, read.i, self.life[read.i], ticket.key, waiting.start,
                     read.latency)  # fmt: skip

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
