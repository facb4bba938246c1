"""The simulation engine: a virtual clock and an event queue around real CacheNodes.

Every node is a real ``CacheNode`` with the real strategy; the simulation injects
only its clock (``timer=``), its bus (``bus=``) and an in-memory store with the
Redis scripts' semantics. A read that misses is split into its phases: ``load``
at ``t``, ``fill`` at ``t + store_latency``; later misses of the same key on the
same node join the load in flight (``node.pending``) and complete at its fill.
Each published message is decoded once and handed to every subscriber with
``node.handle`` at its own arrival time.

With ``database=True`` the run is cache-aside: ``write`` requests write a database
(its versions are the history's versions), ``invalidate`` requests drop the key
from Redis and the nodes, and a read that finds nothing in Redis reads the
database and stores the value back through the node's conditional fill. Reads
can then be protected by a cross-node lease (``lease=True``): the first reader
of an absent key takes it; the others retry Redis every ``lease_retry`` seconds.
The lease is a model of memcache's leases (a Redis ``SET NX PX``); it is not part
of CacheNode.

A Redis restart (``Fault(t, "redis_restart")``) empties Redis and restarts its
sequence at 1, as in the real system; the nodes keep seeing those real sequence
numbers (they cope by flushing on reconnect). The history and the trace instead
record every store version as ``offset + seq``: the offset grows at each restart by
one more than the sequence reached (``offset += seq + 1``), so versions keep rising
as if the sequence had continued, and versions before and after a restart compare.
A version keeps the offset of the epoch that produced it: an entry cached before the
restart keeps its old offset, and so do a load that read Redis before it and a
message published before it. A read that finds the key absent after the restart
reports the new offset or more: newer than every earlier write (Redis lost the
data; the cache served nothing stale). The restart itself is a write: the history
records a ``delete`` by node ``"redis"`` of every key Redis held, at the restart
time, with version ``offset`` (seq 0 of the new epoch). So a node that serves a
pre-restart value after the restart is stale at once, before any new write of the
key: Redis no longer holds that value and every other reader sees the key absent.
These deletes count among the report's writes (and in its store-load peak). With
``database=True`` the database keeps its data and versions: no deletes are recorded
and reads keep the database's versions; only the trace's store versions shift.
Node-wide trace events (flush, gap, disconnect, reconnect) carry the node's
sequence number plus the offset current when they happen.
"""

from __future__ import annotations

import gc
import heapq
import inspect
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tqdm.auto import tqdm

from cachelab.check import Report, check, stale_reads
from cachelab.cluster import node_names
from cachelab.coherence import strategy_for
from cachelab.history import DELETE, INVALIDATE, READ, WRITE, Op
from cachelab.messages import ABSENT, Message, decode, encode_value
from cachelab.node import CacheNode, Flight
from cachelab.sim.network import Fault, Network, check_fault
from cachelab.sim.store import MemoryStore
from cachelab.sim.trace import Caches, TraceEvent, caches_at
from cachelab.sim.workloads import Request, zipf
from cachelab.stats import NodeStats

_OWNED = {"r", "name", "namespace", "strategy", "ttl", "timer", "recorder", "events", "bus"}
NODE_OPTIONS = frozenset(inspect.signature(CacheNode).parameters) - _OWNED
"""The CacheNode options a Simulation passes through (fill_guard, ordering, ...)."""
_RECORD_AS = {"write": WRITE, "delete": DELETE, "invalidate": INVALIDATE}
_OUTCOMES = frozenset({"applied", "outdated"})
_FILLS = frozenset({"fill", "fill_rejected"})
_DETAIL = {
    (op, outcome): op + ":" + outcome
    for op in ("set", "del", "inv", "sync")
    for outcome in ("applied", "outdated", "own")
}
_ENTRY_EVENTS = frozenset({"fill", "fill_rejected", "evict"})
_REPAIRS = frozenset({"repair_keep", "repair_drop"})
_PROGRESS_FROM = 10_000  # runs shorter than this never show a bar
_PROGRESS_STEP = 1024

Event = tuple[float, int, Callable[..., None], tuple[Any, ...]]
_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (hot path)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector, as ``timeit`` does.

    A run keeps several tuples per operation alive to its end (history, trace,
    queue); the collector would rescan them again and again, about 30 % of a run
    on the benchmark. They hold no cycles, so nothing is lost by waiting.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True, eq=False)
class _Port:
    """A node's end of the simulated bus: subscribed at once, nothing to stop.

    ``ordered`` is False when the network reorders or duplicates messages: a node must
    then not read a repeated sequence number as a forgery.
    """

    ordered: bool = True

    def start(self, listener: Any) -> None:
        """Subscribe: the first subscription is confirmed immediately."""
        listener.subscribed(True)

    def stop(self) -> None:
        """Nothing runs in the background."""

    def join(self, timeout: float | None = None) -> None:
        """Nothing to wait for."""


@dataclass(frozen=True, eq=False)
class SimResult:
    """What a run produced: the history, the checker's report, and the trace.

    ``report`` and ``trace`` are computed on first use (the checker costs about a
    fifth of a run), then kept.
    """

    history: list[Op]
    raw_trace: list[TraceEvent] = field(repr=False)  # before the checker marks stale reads
    nodes: tuple[str, ...]
    caches: Caches
    stats: dict[str, NodeStats]
    strategy: str
    carries_value: bool
    ttl: float | None
    store_reads: tuple[float, ...]
    store_checks: tuple[tuple[float, int], ...]  # repair round trips: (time, keys checked)
    db_loads: tuple[float, ...]
    delivered: int
    dropped: int
    skipped: int
    end: float

    @cached_property
    def report(self) -> Report:
        """The consistency checker's report on the history."""
        with paused_gc():
            return check(self.history, messages=self.delivered, nodes=len(self.nodes))

    @cached_property
    def trace(self) -> tuple[TraceEvent, ...]:
        """Every event in time order, with the stale reads marked ``stale_read``."""
        stale = self.report.stale_reads
        with paused_gc():
            return _mark_stale(list(self.raw_trace), self.history, stale)

    def caches_at(self, index: int) -> Caches:
        """Each node's cache (``key -> version``) after the first ``index`` trace events."""
        return caches_at(
            self.trace, index, self.nodes, carries_value=self.carries_value, ttl=self.ttl
        )

    def metrics(self, window: float = 0.01) -> dict[str, Any]:
        """The report's dict plus the simulation's own counts (peaks per ``window`` s)."""
        return {
            **self.report.to_dict(),
            "store_reads": len(self.store_reads),
            "repair_checks": len(self.store_checks),
            "repair_keys": sum(keys for _, keys in self.store_checks),
            "db_loads": len(self.db_loads),
            "peak_store_reads": peak(self.store_reads, window),
            "peak_db_loads": peak(self.db_loads, window),
            "delivered": self.delivered,
            "dropped": self.dropped,
            "skipped": self.skipped,
            "stale_fills_rejected": sum(s.stale_fills_rejected for s in self.stats.values()),
        }


def peak(times: Iterable[float], window: float) -> int:
    """The most ``times`` falling in one fixed window of ``window`` seconds."""
    if not window > 0:
        raise ValueError(f"window must be positive, not {window!r}")
    counts: dict[int, int] = {}
    for t in times:
        slot = math.floor(t / window)
        counts[slot] = counts.get(slot, 0) + 1
    return max(counts.values(), default=0)


class Simulation:
    """N real CacheNodes on a virtual clock, a simulated bus and an in-memory Redis."""

    def __init__(
        self,
        nodes: int = 4,
        strategy: str = "invalidate",
        seed: int = 0,
        network: Network | None = None,
        ttl: float | None = None,
        *,
        store_latency: float = 0.0005,
        database: bool = False,
        db_latency: float = 0.005,
        single_flight: bool = True,
        lease: bool = False,
        lease_ttl: float = 0.1,
        lease_retry: float = 0.002,
        faults: Iterable[Fault] = (),
        progress: bool = True,
        namespace: str = "sim",
        **node_options: Any,
    ) -> None:
        if type(nodes) is not int or nodes < 1:
            raise ValueError(f"a simulation needs a positive int of nodes, not {nodes!r}")
        unknown = set(node_options) - NODE_OPTIONS
        if unknown:
            raise TypeError(f"unknown node options {sorted(unknown)}; use {sorted(NODE_OPTIONS)}")
        if min(store_latency, db_latency) < 0 or min(lease_ttl, lease_retry) <= 0:
            raise ValueError("latencies must be >= 0 and lease times > 0 seconds")
        if lease and not database:
            raise ValueError("a lease protects the database: it needs database=True")
        self.n = nodes
        self.strategy = strategy
        self.seed = seed
        self.network = network or Network()
        self.ttl = ttl
        self.store_latency = store_latency
        self.database = database
        self.db_latency = db_latency
        self.single_flight = single_flight
        self.lease = lease
        self.lease_ttl = lease_ttl
        self.lease_retry = lease_retry
        self.faults = tuple(Fault(*f) for f in faults)
        for fault in self.faults:
            check_fault(fault, nodes)
        self.progress = progress
        self.namespace = namespace
        self.node_options = node_options

    def run(
        self,
        ops: int | None = None,
        *,
        workload: Iterable[Request] | None = None,
        progress: bool | None = None,
    ) -> SimResult:
        """Run ``workload`` (default: ``ops`` Zipf requests) from a fresh start."""
        if workload is None:
            if ops is None:
                raise ValueError("give ops= (a Zipf workload) or workload=")
            workload = zipf(ops, self.n, seed=f"{self.seed}:workload")
        elif ops is not None:
            workload = itertools.islice(workload, ops)
        total = ops if ops is not None else _length(workload)
        show = self.progress if progress is None else progress
        with (
            tqdm(
                total=total,
                unit="op",
                desc="simulating",
                disable=not show or (total is not None and total < _PROGRESS_FROM),
            ) as bar,
            paused_gc(),
        ):
            return _Run(self).execute(workload, bar)

    def __repr__(self) -> str:
        return f"<Simulation {self.n} nodes {self.strategy} seed={self.seed}>"


def _length(workload: Iterable[Request]) -> int | None:
    """The number of requests, when the workload knows it."""
    return len(workload) if isinstance(workload, Sized) else None


class _Run:
    """The state of one run: clock, queue, store, nodes, history and trace."""

    def __init__(self, sim: Simulation) -> None:
        n = sim.n
        self.sim = sim
        self.n = n
        self.now = 0.0
        self.net = sim.network
        self.plain = not (self.net.loss or self.net.duplicate or self.net.reorder)
        self.database = sim.database
        self.rng = random.Random(f"{sim.seed}:network")
        self.names = tuple(node_names(n))
        self.heap: list[Event] = []
        self.tick = itertools.count()
        self.trace: list[TraceEvent] = []
        self.history: list[Op] = []
        self.store = MemoryStore(
            self.time, on_write=self._written, on_publish=self._published, on_check=self._checked
        )
        self.ordered = not (self.net.reorder or self.net.duplicate)
        self.listening = strategy_for(sim.strategy).subscribes
        self.nodes: list[CacheNode | None] = [None] * n
        self.life = [0] * n  # bumped by a crash: events of the old incarnation are void
        self.conn = [0] * n  # bumped when a subscription breaks: its messages are lost
        self.up = [True] * n
        self.cut = [0] * n  # partitions in force
        self.last_arrival = [0.0] * n  # pub/sub is FIFO per subscriber
        self.waiters: dict[Flight, list[float]] = {}
        self.writer = "redis"
        self.written = 0
        self.since = -1.0  # the start of the read whose fill runs now, if any
        self.outcome = "own"
        self.values = itertools.count(1)
        self.db: dict[str, int] = {}
        self.db_seq = 0
        self.offset = 0  # added to every store seq in the history and trace; grows at restarts
        self.restarted = False  # until Redis restarts, every offset is 0 (the fast path)
        self.held: dict[str, dict[str, int]] = {name: {} for name in self.names}
        self.fill_offset: int | None = None  # the offset of the load whose fill runs now
        self.leases: dict[str, float] = {}
        self.store_reads: list[float] = []
        self.store_checks: list[tuple[float, int]] = []  # repair round trips: (time, keys)
        self.db_loads: list[float] = []
        self.delivered = self.dropped = self.skipped = 0
        self.arriving: tuple[str, Message, float, int] | None = None  # the delivery underway
        self.ops = self._handlers()
        for i in range(n):
            self.nodes[i] = self._start(i)
        self._schedule_faults()

    def time(self) -> float:
        """The virtual clock, as the nodes' ``timer``."""
        return self.now

    def _handlers(self) -> dict[str, Callable[[Request], None]]:
        """What each request op does, in this run's mode."""
        if self.sim.database:
            return {"read": self._read, "write": self._db_write, "invalidate": self._write}
        return {
            "read": self._read,
            "write": self._write,
            "delete": self._write,
            "invalidate": self._write,
            "external": self._external,
        }

    def _start(self, i: int) -> CacheNode:
        """A fresh node in slot ``i`` (subscribed at once, with an empty cache)."""
        sim = self.sim
        return CacheNode(
            self.store,
            name=self.names[i],
            namespace=sim.namespace,
            strategy=sim.strategy,
            ttl=sim.ttl,
            timer=self.time,
            events=self._event,
            bus=_Port(self.ordered),
            **sim.node_options,
        )

    def _at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        """Schedule ``fn(*args)`` at virtual time ``t`` (ties run in scheduling order)."""
        heapq.heappush(self.heap, (t, next(self.tick), fn, args))

    def _note(
        self, kind: str, node: str, key: str = "", version: int = 0, detail: str = ""
    ) -> None:
        """Append an instant trace event at the current time."""
        now = self.now
        self.trace.append(_new(TraceEvent, (now, kind, node, key, version, detail, now)))

    # -- the loop ----------------------------------------------------------

    def execute(self, workload: Iterable[Request], bar: Any) -> SimResult:
        """Interleave the requests with the queued events, in time order."""
        heap, pop, ops = self.heap, heapq.heappop, self.ops
        count = 0
        for req in workload:
            t = req[0]  # req.time; indexing is cheaper than the NamedTuple property
            while heap and heap[0][0] <= t:
                self.now, _, fn, args = pop(heap)
                fn(*args)
            if t < self.now:
                raise ValueError(f"the workload went back in time at {req!r}")
            self.now = t
            try:
                handler = ops[req[2]]
            except KeyError:
                raise ValueError(f"unknown op {req.op!r} in this mode; use {sorted(ops)}") from None
            handler(req)
            count += 1
            if count % _PROGRESS_STEP == 0:
                bar.update(_PROGRESS_STEP)
        while heap:
            self.now, _, fn, args = pop(heap)
            fn(*args)
        bar.update(count % _PROGRESS_STEP)
        return self._result()

    def _live(self, req: Request) -> CacheNode | None:
        """The node a request runs on, or None (counted as skipped) while it is down."""
        i = req.node
        if not 0 <= i < self.n:
            raise ValueError(f"request for node {i}, but there are {self.n} nodes: {req!r}")
        node = self.nodes[i]
        if node is None:
            self.skipped += 1
        return node

    # -- the node's events hook -----------------------------------------------

    def _event(self, node: str, kind: str, key: str, version: int) -> None:
        """Trace what the node reports; applied/outdated become the delivery's outcome."""
        if kind in _OUTCOMES:
            self.outcome = kind
            self._delivered(kind)
            return
        now = self.now
        since = self.since if kind in _FILLS and self.since >= 0 else now
        if self.restarted:
            version += self._event_offset(node, kind, key)
        self.trace.append(_new(TraceEvent, (now, kind, node, key, version, "", since)))

    def _event_offset(self, node: str, kind: str, key: str) -> int:
        """The offset of a node event's version; track the node's pre-restart entries."""
        held = self.held[node]
        if kind == "suspect":
            return 0  # its version is a threshold in the node's own numbering (0: all)
        if kind not in _ENTRY_EVENTS:
            if kind == "flush":
                held.clear()
            elif kind in _REPAIRS:  # the store's current version: this epoch's
                held.pop(key, None)
            return self.offset
        if kind == "evict":
            return held.pop(key, self.offset) if held else self.offset
        offset = self.offset if self.fill_offset is None else self.fill_offset
        if kind == "fill":
            if offset == self.offset:
                held.pop(key, None)
            else:
                held[key] = offset  # a load from before a restart fills after it
        return offset

    def _held_offset(self, node: str, key: str) -> int:
        """The offset of ``node``'s version of ``key``: older if cached before a restart."""
        held = self.held[node]
        return held.get(key, self.offset) if held else self.offset

    # -- reads ---------------------------------------------------------------

    def _read(self, req: Request) -> None:
        """A read: a local hit now, or a miss that completes at its fill."""
        i, key = req[1], req[3]  # node, key
        node = self.nodes[i] if 0 <= i < self.n else self._live(req)
        if node is None:
            self.skipped += 1
            return
        entry = node.lookup_entry(key)
        if entry is None or self.database:
            self._looked_up(i, node, key, self.now, req.latency, entry)
            return
        now, name, version = self.now, node.name, entry[1]  # the hit path, flat: most take it
        if self.restarted:
            version += self._held_offset(name, key)
        self.history.append(_new(Op, (name, READ, key, now, now, version, True)))
        self.trace.append(_new(TraceEvent, (now, "read", name, key, version, "hit", now)))

    def _read_at(
        self,
        i: int,
        node: CacheNode,
        key: str,
        start: float,
        latency: float | None,
    ) -> None:
        """A read (or a retry that keeps its start): look up, then go on."""
        self._looked_up(i, node, key, start, latency, node.lookup_entry(key))

    def _looked_up(
        self,
        i: int,
        node: CacheNode,
        key: str,
        start: float,
        latency: float | None,
        entry: tuple[Any, int] | None,
    ) -> None:
        """After the lookup: a hit, or join the load in flight, or start one."""
        if entry is not None and not (self.sim.database and entry[0] is ABSENT):
            offset = self._held_offset(node.name, key)
            self._done(node.name, key, start, self._version(entry[0], entry[1], offset), "hit")
            return
        flight = node.pending(key) if self.sim.single_flight else None
        if flight is not None:
            self.waiters.setdefault(flight, []).append(start)
            return
        flight = node.load(key)
        self.store_reads.append(self.now)
        if self.sim.database:
            # like memcache's lease-get, the lease is decided in the same round trip as the read
            leased = not self.sim.lease or flight.value is not ABSENT or self._take_lease(key)
            wait = self.sim.store_latency
            args = (i, self.life[i], flight, start, latency, leased, self.offset)
            self._at(self.now + wait, self._loaded, *args)
        else:
            wait = self.sim.store_latency if latency is None else latency
            self._at(self.now + wait, self._filled, i, self.life[i], flight, start, self.offset)

    def _version(self, value: Any, version: int, offset: int) -> int:
        """The version a read reports: the store's (shifted), or the database's (the value)."""
        return int(value) if self.sim.database else version + offset

    def _filled(self, i: int, life: int, flight: Flight, start: float, offset: int) -> None:
        """The store's answer arrives: fill through the guard, complete every reader.

        ``offset`` is the one in force when the load read Redis.
        """
        node = self.nodes[i]
        waiting = self.waiters.pop(flight, ())
        if node is None or self.life[i] != life:
            return  # the node crashed: these reads never complete
        self._fill(node, flight, start, offset)
        version = self._version(flight.value, flight.version, offset)
        self._done(node.name, flight.key, start, version, "miss")
        for joined in waiting:
            self._done(node.name, flight.key, joined, version, "joined")

    def _fill(self, node: CacheNode, flight: Flight, start: float, offset: int) -> None:
        """Settle a ticket; the fill events it causes carry the read's start and offset."""
        self.since, self.fill_offset = start, offset
        node.fill(flight)
        self.since, self.fill_offset = -1.0, None

    def _done(self, name: str, key: str, start: float, version: int, how: str) -> None:
        """Record a completed read in the history and the trace."""
        now = self.now
        self.history.append(_new(Op, (name, READ, key, start, now, version, how == "hit")))
        self.trace.append(_new(TraceEvent, (now, "read", name, key, version, how, start)))

    # -- cache-aside reads (database=True) -------------------------------------

    def _loaded(
        self,
        i: int,
        life: int,
        flight: Flight,
        start: float,
        latency: float | None,
        leased: bool,
        offset: int,
    ) -> None:
        """Redis answered a cache-aside read: a value fills; absence goes to the database."""
        node = self.nodes[i]
        if node is None or self.life[i] != life or flight.value is not ABSENT:
            self._filled(i, life, flight, start, offset)
            return
        if not leased:
            self._wait_for_lease(i, node, flight, start, latency, offset)
            return
        value = self.db.get(flight.key, 0)
        self.db_loads.append(self.now)
        self._note("db_load", node.name, flight.key, value)
        wait = self.sim.db_latency if latency is None else latency
        self._at(self.now + wait, self._load_done, i, life, flight, start, value, offset)

    def _load_done(
        self, i: int, life: int, flight: Flight, start: float, value: int, offset: int
    ) -> None:
        """The database answered: store the value through the conditional fill, then fill."""
        node = self.nodes[i]
        if node is not None and self.life[i] == life:  # a dead holder's lease runs out instead
            self.leases.pop(flight.key, None)
            self.writer = node.name
            seq = self.store.meta().seq
            node.load_external(flight, lambda: value)
            if self.store.meta().seq != seq:  # stored: the ticket holds a version of this epoch
                offset = self.offset
        self._filled(i, life, flight, start, offset)

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
        flight: Flight,
        start: float,
        latency: float | None,
        offset: int,
    ) -> None:
        """Refused the lease: release the ticket; this read and its joiners retry later."""
        # settling the ticket caches at worst the absence, which reads skip
        self._fill(node, flight, start, offset)
        self._note("lease", node.name, flight.key, flight.version + offset, "wait")
        retry = self.now + self.sim.lease_retry
        for begun in (start, *self.waiters.pop(flight, ())):
            self._at(retry, self._retry, i, self.life[i], flight.key, begun, latency)

    def _retry(self, i: int, life: int, key: str, start: float, latency: float | None) -> None:
        """A read waiting for a lease tries again (it keeps its original start)."""
        node = self.nodes[i]
        if node is not None and self.life[i] == life:
            self._read_at(i, node, key, start, latency)

    # -- writes --------------------------------------------------------------

    def _write(self, req: Request) -> None:
        """A node's set, delete or invalidation: the store, then the writer's own cache."""
        node = self._live(req)
        if node is None:
            return
        self.writer = node.name
        if req.op == "write":
            node.set(req.key, next(self.values) if req.value is None else req.value)
        elif req.op == "delete":
            node.delete(req.key)
        else:
            node.invalidate(req.key)
        if not self.sim.database:  # an invalidation is no new version of the database
            now = self.now
            version = self.written + self.offset
            self.history.append(Op(node.name, _RECORD_AS[req.op], req.key, now, now, version))

    def _external(self, req: Request) -> None:
        """A writer that is not a node: the same script, but no message."""
        self.writer = "external"
        value = next(self.values) if req.value is None else req.value
        seq = self.store.write("set", req.key, encode_value(value), None).seq
        self.history.append(Op("external", WRITE, req.key, self.now, self.now, seq + self.offset))

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

    def _checked(self, keys: int) -> None:
        """A node checked ``keys`` suspects in one round trip (the store's hook)."""
        self.store_checks.append((self.now, keys))

    def _written(self, op: str, key: str, seq: int) -> None:
        """The store applied a write (its hook)."""
        self.written = seq
        self._note("write", self.writer, key, seq + self.offset, op)

    # -- the bus ---------------------------------------------------------------

    def _published(self, raw: bytes) -> None:
        """Decode a published message once and send it to every subscriber."""
        msg = decode(raw, self.sim.namespace)
        self._note("send", self.writer, msg.key, msg.seq + self.offset, msg.op)
        if not self.listening:  # every write publishes, but nobody here subscribes
            return
        if self.plain:
            self._fan_out(msg)
            return
        for i in range(self.n):
            self._send(i, msg)

    def _fan_out(self, msg: Message) -> None:
        """``_send`` for every node of a plain network (no loss, duplicates or reordering).

        Inlined because it runs once per message and node: the simulator's hottest loop.
        """
        now, nodes, up, conn, last = self.now, self.nodes, self.up, self.conn, self.last_arrival
        delay, jitter, rand = self.net.delay, self.net.jitter, self.rng.random
        heap, tick, arrive, offset = self.heap, self.tick, self._arrive, self.offset
        for i in range(self.n):
            if nodes[i] is None or not up[i]:
                self._drop(i, msg, now, "down" if nodes[i] is None else "disconnected", offset)
                continue
            t = now + delay + jitter * rand() if jitter else now + delay
            if t < last[i]:
                t = last[i]  # pub/sub keeps each subscriber's messages in order
            last[i] = t
            heapq.heappush(heap, (t, next(tick), arrive, (i, conn[i], msg, now, False, offset)))

    def _send(self, i: int, msg: Message) -> None:
        """Schedule one delivery (and maybe its duplicate), or drop it at once."""
        net, rng, now, offset = self.net, self.rng, self.now, self.offset
        if self.nodes[i] is None or not self.up[i]:
            self._drop(i, msg, now, "down" if self.nodes[i] is None else "disconnected", offset)
            return
        arrive = now + net.latency(rng)
        if net.reorder and rng.random() < net.reorder:
            arrive += net.holdback * rng.random()  # out of FIFO: later messages overtake it
        else:
            arrive = max(arrive, self.last_arrival[i])
            self.last_arrival[i] = arrive
        self._at(arrive, self._arrive, i, self.conn[i], msg, now, self._lost(), offset)
        if net.duplicate and rng.random() < net.duplicate:
            again = arrive + net.latency(rng)
            self._at(again, self._arrive, i, self.conn[i], msg, now, self._lost(), offset)

    def _lost(self) -> bool:
        """Draw whether one delivery is lost."""
        return bool(self.net.loss) and self.rng.random() < self.net.loss

    def _arrive(
        self, i: int, conn: int, msg: Message, sent: float, lost: bool, offset: int
    ) -> None:
        """A message reaches node ``i``, unless it was lost on the way.

        ``offset`` is the one in force when it was published.
        """
        node = self.nodes[i]
        if lost or node is None or conn != self.conn[i] or self.cut[i]:
            self._drop(i, msg, sent, self._reason(i, conn, lost), offset)
            return
        self.outcome = "own"
        self.arriving = (node.name, msg, sent, offset)
        node.handle(msg)
        self.delivered += 1
        if self.arriving is not None:  # the node reported no outcome: its own message
            self._delivered("own")
        if self.restarted and self.outcome == "applied":
            self.held[node.name].pop(msg.key, None)  # it replaced or dropped an older entry

    def _delivered(self, outcome: str) -> None:
        """Trace the delivery in flight, at the moment the node applied (or ignored) it:
        before any repair it set off, which the node reports after."""
        assert self.arriving is not None
        name, msg, sent, offset = self.arriving
        self.arriving = None
        detail = _DETAIL[msg.op, outcome]
        event = (self.now, "deliver", name, msg.key, msg.seq + offset, detail, sent)
        self.trace.append(_new(TraceEvent, event))

    def _reason(self, i: int, conn: int, lost: bool) -> str:
        """Why a delivery failed: the first cause that applies."""
        if lost:
            return "loss"
        if self.nodes[i] is None:
            return "down"
        return "disconnected" if conn != self.conn[i] else "partition"

    def _drop(self, i: int, msg: Message, sent: float, reason: str, offset: int) -> None:
        """Trace a message (published under ``offset``) that never reached node ``i``."""
        self.dropped += 1
        version = msg.seq + offset
        event = TraceEvent(self.now, "drop", self.names[i], msg.key, version, reason, sent)
        self.trace.append(event)

    # -- faults ---------------------------------------------------------------

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
        node.disconnected()
        if math.isfinite(duration):
            self._at(self.now + duration, self._reconnect, i, self.life[i], self.conn[i])

    def _reconnect(self, i: int, life: int, conn: int) -> None:
        """Resubscribe, unless the node died or broke again meanwhile."""
        node = self.nodes[i]
        if node is None or self.life[i] != life or self.conn[i] != conn:
            return
        self.up[i] = True
        node.subscribed(False)

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
            node.receive(fault.data)

    # -- the result -------------------------------------------------------------

    def _cache(self, node: CacheNode) -> dict[str, int]:
        """``key -> version`` of a node's entries, with the history's versions."""
        return {k: v + self._held_offset(node.name, k) for k, (_, v) in node.snapshot().items()}

    def _result(self) -> SimResult:
        """Snapshot the nodes; the report and the marked trace come on demand."""
        live = [node for node in self.nodes if node is not None]
        return SimResult(
            history=self.history,
            raw_trace=self.trace,
            nodes=self.names,
            caches={name: {} for name in self.names} | {n.name: self._cache(n) for n in live},
            stats={node.name: node.stats for node in live},
            strategy=self.sim.strategy,
            carries_value=any(node.strategy.carries_value for node in live),
            ttl=self.sim.ttl,
            store_reads=tuple(self.store_reads),
            store_checks=tuple(self.store_checks),
            db_loads=tuple(self.db_loads),
            delivered=self.delivered,
            dropped=self.dropped,
            skipped=self.skipped,
            end=self.now,
        )


def _mark_stale(trace: list[TraceEvent], history: list[Op], count: int) -> tuple[TraceEvent, ...]:
    """The trace with the checker's stale reads as ``stale_read`` events.

    Reads appear in the history and the trace in the same order, so the n-th read
    event of the trace is the n-th read of the history.
    """
    if count:
        stale = {op for op, _ in stale_reads(history)}  # equal ops are equally stale
        reads = (op for op in history if op.op == READ)
        wanted = {n for n, op in enumerate(reads) if op in stale}
        n = 0
        for pos, event in enumerate(trace):
            if event.kind == "read":
                if n in wanted:
                    trace[pos] = event._replace(kind="stale_read")
                n += 1
    return tuple(trace)
