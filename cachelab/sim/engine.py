"""The simulation engine: a virtual clock and an event queue around real CacheNodes.

Every node is a real ``CacheNode`` with the real strategy; the simulation injects
only its clock (``timer=``), its bus (``bus=``) and an in-memory store with the
Redis scripts' semantics. A read that misses is split into its phases: ``load``
at ``t``, ``fill`` at ``t + store_latency``; later misses of the same key on the
same node join the load in flight (``node.pending``) and complete at its fill.
Each published message is decoded once and handed to every subscriber with
``node.handle`` at its own arrival time. On the ``stream`` strategy the store keeps
the messages in a capped stream and each node reads it from its last id (``delivery.py``):
a node whose subscription broke replays what it missed when it comes back.

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

With the node option ``verify=`` (a fraction of hits), each node gets a ``Sampler`` seeded
from the run's seed, and the simulation drives it instead of a thread: a sampled hit is
verified against the store ``verify_delay`` virtual seconds after it (0: at the hit's own
instant, where the sampler's verdict is exactly the checker's). Those round trips are not
counted as repair checks. The sampler compares with Redis: in a cache-aside run
(``database=True``) the checker measures against the database instead.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import random
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from cachelab import validate
from cachelab.cluster import node_names
from cachelab.coherence import strategy_for
from cachelab.history import DELETE, INVALIDATE, WRITE, Op
from cachelab.messages import Message, encode_value
from cachelab.node import CacheNode
from cachelab.sampler import Sampler
from cachelab.sim.cacheaside import CacheAside
from cachelab.sim.delivery import Delivery
from cachelab.sim.faults import Faults
from cachelab.sim.network import Fault, Network, check_fault
from cachelab.sim.result import SimResult, paused_gc
from cachelab.sim.state import Event, new_tuple
from cachelab.sim.store import MemoryStore
from cachelab.sim.trace import TraceEvent
from cachelab.sim.tracking import SimKeyspace, TrackedVersions, TrackingServer
from cachelab.sim.workloads import Request, zipf
from cachelab.tracking import TrackingNode

_OWNED = {"r", "name", "namespace", "strategy", "ttl", "timer", "recorder", "events", "bus"}
_TRACKING_OPTIONS = frozenset({"prefix", "bcast", "noloop"})
NODE_OPTIONS = (frozenset(inspect.signature(CacheNode).parameters) | _TRACKING_OPTIONS) - _OWNED
"""The CacheNode options a Simulation passes through (fill_guard, ordering, ...; and
for strategy "tracking", bcast and noloop)."""
_RECORD_AS = {"write": WRITE, "delete": DELETE, "invalidate": INVALIDATE}
_OUTSIDE = frozenset({"script", "plain"})
"""How an ``external`` request writes: through cachelab's script without its message (a
sequence number is taken: nodes can tell), or ``plain``: outside cachelab altogether (a
plain SET of a tracked key; for the versioned strategies, a value replaced in place, with
no number taken, which they cannot tell; such runs record each value as its version)."""
_OUTCOMES = frozenset({"applied", "outdated"})
_FILLS = frozenset({"fill", "fill_rejected"})
_ENTRY_EVENTS = frozenset({"fill", "fill_rejected", "evict"})
_REPAIRS = frozenset({"repair_keep", "repair_drop"})
_PROGRESS_FROM = 10_000  # runs shorter than this never show a bar
_PROGRESS_STEP = 1024

_new = new_tuple


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
        outside: str = "script",
        progress: bool = True,
        namespace: str = "sim",
        verify_delay: float = 0.0,
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
        if outside not in _OUTSIDE:
            raise ValueError(f"outside must be one of {sorted(_OUTSIDE)}, not {outside!r}")
        if strategy == "tracking" and database:
            raise ValueError("strategy 'tracking' caches plain keys: it runs without database=")
        if strategy != "tracking" and set(node_options) & _TRACKING_OPTIONS:
            raise TypeError(f"{sorted(_TRACKING_OPTIONS)} are options of strategy 'tracking'")
        if not verify_delay >= 0 or verify_delay == float("inf"):
            raise ValueError(f"verify_delay must be >= 0 seconds, not {verify_delay!r}")
        verify = node_options.get("verify")
        if isinstance(verify, Sampler):
            raise TypeError("verify= takes a fraction of hits here: each node gets its own Sampler")
        if verify is not None:
            Sampler(verify)  # a bad rate fails now, with the node's message
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
        self.outside = outside
        self.progress = progress
        self.namespace = namespace
        self.verify_delay = float(verify_delay)
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


class _Run(Delivery, Faults, CacheAside):
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
        strategy = strategy_for(sim.strategy)
        self.store = MemoryStore(
            self.time,
            on_write=self._written,
            on_publish=self._published,
            on_check=self._checked,
            stream_maxlen=validate.stream_maxlen(sim.node_options.get("stream_maxlen"), strategy),
        )
        self.listening = strategy.subscribes
        self.streaming = strategy.transport == "stream"
        self.cursor = [0] * n  # each node's last stream id read (the stream strategy)
        self.ordered = self.streaming or not (self.net.reorder or self.net.duplicate)
        self.tracking: TrackingServer | None = None
        if sim.strategy == "tracking":
            bcast = bool(sim.node_options.get("bcast", False))
            noloop = bool(sim.node_options.get("noloop", bcast))
            self.tracking = TrackingServer(self.store, n, bcast=bcast, noloop=noloop)
        self.index = {name: i for i, name in enumerate(self.names)}
        # A plain outside write takes no version: versions are then the values themselves.
        self.by_value = sim.database or (sim.outside == "plain" and self.tracking is None)
        self.numbers = TrackedVersions()  # tracking: the store versions behind nodes' numbers
        self.nodes: list[CacheNode | None] = [None] * n
        self.life = [0] * n  # bumped by a crash: events of the old incarnation are void
        self.conn = [0] * n  # bumped when a subscription breaks: its messages are lost
        self.up = [True] * n
        self.cut = [0] * n  # partitions in force
        self.last_arrival = [0.0] * n  # pub/sub is FIFO per subscriber
        self.waiters = {}
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
        self.samplers: list[Sampler | None] = [None] * n  # verify=: each node's sampler
        self.verifying = False  # a sampler's round trip runs (not a repair check)
        self.ops = self._handlers()
        for i in range(n):
            self.nodes[i] = self._start(i)
        self._schedule_faults()

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
        options = sim.node_options
        if options.get("verify") is not None:
            seeded = random.Random(f"{sim.seed}:verify:{i}:{self.life[i]}")
            options = {**options, "verify": Sampler(options["verify"], random=seeded.random)}
        self.cursor[i] = self.store.stream_end()  # a new reader starts at the stream's end
        node: CacheNode
        if self.tracking is not None:
            node = TrackingNode(
                SimKeyspace(self.tracking, i),
                name=self.names[i],
                namespace=sim.namespace,
                ttl=sim.ttl,
                timer=self.time,
                events=self._event,
                bus=_Port(self.ordered),  # type: ignore[arg-type]
                **options,
            )
        else:
            node = CacheNode(
                self.store,
                name=self.names[i],
                namespace=sim.namespace,
                strategy=sim.strategy,
                ttl=sim.ttl,
                timer=self.time,
                events=self._event,
                bus=_Port(self.ordered),
                **options,
            )
        self.samplers[i] = node.sampler
        return node

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

    # -- writes --------------------------------------------------------------

    def _write(self, req: Request) -> None:
        """A node's set, delete or invalidation: the store, then the writer's own cache."""
        node = self._live(req)
        if node is None:
            return
        if self.by_value and not self.sim.database and req.op != "write":
            raise ValueError(f"{req.op!r} has no value to number: outside='plain' runs take writes")
        self.writer = node.name
        value = 0
        if req.op == "write":
            value = next(self.values) if req.value is None else req.value
            node.set(req.key, value)
        elif req.op == "delete":
            node.delete(req.key)
        else:
            node.invalidate(req.key)
        if not self.sim.database:  # an invalidation is no new version of the database
            now = self.now
            version = self.written + self.offset
            if self.by_value:
                version = int(value)
            self.history.append(Op(node.name, _RECORD_AS[req.op], req.key, now, now, version))

    def _external(self, req: Request) -> None:
        """A writer that is not a node: the same script without its message, or a plain write."""
        self.writer = "external"
        value = next(self.values) if req.value is None else req.value
        if self.by_value:
            self.store.replace(req.key, encode_value(value))
            self.history.append(Op("external", WRITE, req.key, self.now, self.now, value))
            return
        seq = self.store.write("set", req.key, encode_value(value), None).seq
        self.history.append(Op("external", WRITE, req.key, self.now, self.now, seq + self.offset))

    def _checked(self, keys: int) -> None:
        """A node checked ``keys`` suspects in one round trip (the store's hook)."""
        if not self.verifying:
            self.store_checks.append((self.now, keys))

    def _written(self, op: str, key: str, seq: int) -> None:
        """The store applied a write (its hook)."""
        self.written = seq
        self._note("write", self.writer, key, seq + self.offset, op)
        if self.tracking is not None:
            self._tell(key, seq, self.tracking.told(key, self.index.get(self.writer)))

    def _tell(self, key: str, seq: int, told: list[int]) -> None:
        """The server sends its invalidation of ``key`` to each tracking node in ``told``."""
        if not told:
            return
        msg = Message(self.sim.namespace, "inv", key, "redis", seq)
        self._note("send", self.writer, key, seq + self.offset, "inv")
        for i in told:
            self._send(i, msg)

    # -- the result -------------------------------------------------------------

    def _cache(self, node: CacheNode) -> dict[str, int]:
        """``key -> version`` of a node's entries, with the history's versions."""
        entries = node.snapshot().items()
        if self.tracking is not None:
            return {k: self.numbers.of(node.name, k, v) for k, (_, v) in entries}
        return {k: v + self._held_offset(node.name, k) for k, (_, v) in entries}

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
