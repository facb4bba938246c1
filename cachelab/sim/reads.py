"""A simulated node's reads: the hit path, and every miss driven through the node's own
plan (plans.py, ``Plans.miss``), with virtual time between its effects.

The simulator is the third driver of the protocol: it re-sequences nothing. A miss's plan
yields the store's read, which the simulator performs at once (the store is in memory)
and answers one network delay later; a join, which waits for the leader's completion; and,
in a cache-aside run, the database load, which may wait for a lease. The store's fill
script answers at once, as before.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from cachelab.contract import Reply
from cachelab.core import Ticket
from cachelab.driver import phases
from cachelab.history import READ, Op
from cachelab.messages import ABSENT
from cachelab.node import CacheNode
from cachelab.plans import Compute, Join, LoaderCall, Plan, StoreCall
from cachelab.sim.state import RunState, new_tuple
from cachelab.sim.trace import TraceEvent
from cachelab.sim.workloads import Request


def _from_database() -> Any:
    """The loader a cache-aside miss names; the simulator performs the load itself."""
    raise AssertionError("a simulated database load is the simulator's effect")


@dataclass(eq=False, slots=True)
class SimRead:
    """One miss in flight: its plan, and what completes it in the history."""

    i: int
    life: int
    node: CacheNode
    key: str
    start: float
    latency: float | None
    plan: Plan[Ticket]
    offset: int  # the offset in force when the load read Redis
    ticket: Ticket | None = None
    leased: bool = True


class Reads(RunState):
    """The read path of a run."""

    owners = itertools.count(1)  # each read is its own owner: no two share a load by mistake

    def _read(self, req: Request) -> None:
        """A read: a local hit now, or a miss that completes when its plan ends."""
        i, key = req[1], req[3]  # node, key
        node = self.nodes[i] if 0 <= i < self.n else self._live(req)
        if node is None:
            self.skipped += 1
            return
        entry = phases(node).lookup_entry(key)
        if entry is None or self.database:
            self._looked_up(i, node, key, self.now, req.latency, entry)
            return
        now, name, version = self.now, node.name, entry[1]  # the hit path, flat: most take it
        if self.tracking is not None:
            version = self.numbers.of(name, key, version)
        elif self.by_value:
            version = 0 if entry[0] is ABSENT else int(entry[0])
        if self.restarted:
            version += self._held_offset(name, key)
        self.history.append(new_tuple(Op, (name, READ, key, now, now, version, True, "")))
        self.trace.append(new_tuple(TraceEvent, (now, "read", name, key, version, "hit", now)))
        if self.samplers[i] is not None:
            self._sample(i, node, key)

    def _read_at(
        self, i: int, node: CacheNode, key: str, start: float, latency: float | None
    ) -> None:
        """A read (or a retry that keeps its start): look up, then go on."""
        self._looked_up(i, node, key, start, latency, phases(node).lookup_entry(key))

    def _looked_up(
        self,
        i: int,
        node: CacheNode,
        key: str,
        start: float,
        latency: float | None,
        entry: tuple[Any, int] | None,
    ) -> None:
        """After the lookup: a hit, or the miss plan (which joins a load or starts one)."""
        if entry is not None and not (self.sim.database and entry[0] is ABSENT):
            offset = self._held_offset(node.name, key)
            version = entry[1]
            if self.tracking is not None:
                version = self.numbers.of(node.name, key, version)
            self._done(node.name, key, start, self._version(entry[0], version, offset), "hit")
            if self.samplers[i] is not None:
                self._sample(i, node, key)
            return
        loader = _from_database if self.sim.database else None
        plan = phases(node).plans.miss(key, loader, next(self.owners), self.sim.single_flight)
        self._advance(SimRead(i, self.life[i], node, key, start, latency, plan, self.offset))

    # -- driving a miss's plan ---------------------------------------------------------

    def _advance(self, read: SimRead, result: Any = None) -> None:
        """Step ``read``'s plan until it waits for the network, the database or a leader."""
        driver = phases(read.node)
        error: BaseException | None = None
        while True:
            self.since, self.fill_offset = read.start, read.offset  # its fill's events
            effect, result, error = driver._step(read.plan, result, error)
            self.since, self.fill_offset = -1.0, None
            if error is not None:
                raise error
            if effect is None:
                self._completed(read, result)
                return
            if type(effect) is Join:
                self.waiters.setdefault(effect.ticket, []).append(read)
                return
            if type(effect) is LoaderCall:
                self._load_database(read, effect.ticket)
                return
            if type(effect) is Compute:  # no time passes: the simulator holds no lock
                try:
                    result = effect.fn(*effect.args)
                except Exception as exc:  # the plan decides, as under a real driver
                    result, error = None, exc
                continue
            assert type(effect) is StoreCall
            if effect.method == "read":
                self._read_store(read, effect)
                return
            result = self._call_store(read, effect)

    def _read_store(self, read: SimRead, call: StoreCall) -> None:
        """The store answers now; the reply reaches the node one store latency later."""
        reply: Reply = phases(read.node).store.read(*call.args)
        self.store_reads.append(self.now)
        read.ticket = call.ticket
        if self.tracking is not None:  # the version this read saw, for the history
            self.numbers.read(call.ticket, self.store.version(read.key))
        wait = self.sim.store_latency
        if self.sim.database:
            # like memcache's lease-get, the lease is decided in the same round trip as the read
            absent = reply.value is None
            read.leased = not self.sim.lease or not absent or self._take_lease(read.key)
        elif read.latency is not None:
            wait = read.latency
        self._at(self.now + wait, self._replied, read, reply)

    def _call_store(self, read: SimRead, call: StoreCall) -> Any:
        """Another store call (the conditional fill of a cache-aside load): at once. A fill
        that stored gives the ticket a version of the store's current epoch."""
        seq = self.store.meta().seq
        result = getattr(phases(read.node).store, call.method)(*call.args)
        if self.store.meta().seq != seq:
            read.offset = self.offset
        return result

    def _replied(self, read: SimRead, reply: Reply) -> None:
        """The store's reply arrives, unless the node died meanwhile."""
        if self._alive(read):
            self._advance(read, reply)

    def _alive(self, read: SimRead) -> bool:
        """Whether the read's node still runs; if not, its joiners never complete either."""
        if self.nodes[read.i] is not None and self.life[read.i] == read.life:
            return True
        if read.ticket is not None:
            self.waiters.pop(read.ticket, None)
        return False

    def _completed(self, read: SimRead, ticket: Ticket) -> None:
        """The plan ended: the read and every read joined to its load complete."""
        name = read.node.name
        if self.tracking is not None:  # the node numbers its entries itself: map them
            version = self.numbers.filled(name, ticket.key, ticket.version, ticket) + read.offset
        else:
            version = self._version(ticket.value, ticket.version, read.offset)
        self._done(name, ticket.key, read.start, version, "miss")
        driver = phases(read.node)
        for joined in self.waiters.pop(ticket, ()):
            driver._step(joined.plan, True, None)  # its plan ends with the leader's ticket
            self._done(name, ticket.key, joined.start, version, "joined")

    # -- hits: sampling ---------------------------------------------------------------

    def _sample(self, i: int, node: CacheNode, key: str) -> None:
        """A hit: if the node's sampler picks it, verify it ``verify_delay`` later."""
        if phases(node).offer_sample(key):
            delay = self.sim.verify_delay
            if delay:
                self._at(self.now + delay, self._verify, i, self.life[i])
            else:
                self._verify(i, self.life[i])

    def _verify(self, i: int, life: int) -> None:
        """Verify the node's oldest sample (each was queued with its own event)."""
        node = self.nodes[i]
        if node is None or self.life[i] != life:
            return  # the node crashed: its samples went with it
        self.verifying = True
        try:
            phases(node).verify_pending(1)
        finally:
            self.verifying = False

    def _version(self, value: Any, version: int, offset: int) -> int:
        """The version a read reports: the store's (shifted), or the database's (the value)."""
        if self.by_value:
            return 0 if value is ABSENT else int(value)
        return version + offset

    def _done(self, name: str, key: str, start: float, version: int, how: str) -> None:
        """Record a completed read in the history and the trace."""
        now = self.now
        self.history.append(new_tuple(Op, (name, READ, key, start, now, version, how == "hit", "")))
        self.trace.append(new_tuple(TraceEvent, (now, "read", name, key, version, how, start)))
