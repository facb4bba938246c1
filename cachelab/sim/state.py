"""The state of one simulated run that its parts share: clock, queue, nodes, links, trace.

``_Run`` (engine.py) is built from parts, one idea each: the loop and writes there;
reads (each miss driven through the node's own plan) in ``reads.py``, cache-aside loads
in ``cacheaside.py``; message delivery in ``delivery.py``; injected faults in
``faults.py``. They share this state, declared here once.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cachelab.core import Ticket
from cachelab.history import Op
from cachelab.messages import Message
from cachelab.node import CacheNode
from cachelab.sim.network import Network
from cachelab.sim.store import MemoryStore
from cachelab.sim.trace import TraceEvent
from cachelab.sim.tracking import TrackedVersions, TrackingServer
from cachelab.sim.workloads import Request

if TYPE_CHECKING:
    from cachelab.sampler import Sampler
    from cachelab.sim.engine import Simulation
    from cachelab.sim.reads import SimRead

Event = tuple[float, int, Callable[..., None], tuple[Any, ...]]
new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (hot path)


class RunState:
    """What every part of a run reads and changes."""

    sim: Simulation
    n: int
    now: float
    net: Network
    rng: random.Random
    names: tuple[str, ...]
    heap: list[Event]
    tick: itertools.count[int]
    trace: list[TraceEvent]
    history: list[Op]
    store: MemoryStore
    tracking: TrackingServer | None  # strategy "tracking": the server's side of it
    nodes: list[CacheNode | None]
    life: list[int]  # bumped by a crash: events of the old incarnation are void
    conn: list[int]  # bumped when a subscription breaks: its messages are lost
    up: list[bool]
    cut: list[int]  # partitions in force
    last_arrival: list[float]  # pub/sub is FIFO per subscriber
    plain: bool  # no loss, duplicates or reordering: the fast delivery path
    listening: bool  # the strategy subscribes
    streaming: bool  # its messages travel in the store's stream, read by cursor
    cursor: list[int]  # each node's last stream id read
    database: bool
    writer: str
    outcome: str
    offset: int  # added to every store seq in the history and trace; grows at restarts
    restarted: bool  # until Redis restarts, every offset is 0 (the fast path)
    held: dict[str, dict[str, int]]
    leases: dict[str, float]
    waiters: dict[Ticket, list[SimRead]]  # reads joined to a load in flight, in join order
    numbers: TrackedVersions  # tracking: the store versions behind nodes' numbers
    by_value: bool  # versions are the values themselves (no store versions to report)
    samplers: list[Sampler | None]
    store_reads: list[float]
    verifying: bool
    since: float  # the start of the read whose fill runs now, if any
    fill_offset: int | None  # the offset of the load whose fill runs now
    skipped: int
    db: dict[str, int]  # the database of a cache-aside run: key -> version
    db_seq: int
    db_loads: list[float]
    delivered: int
    dropped: int
    arriving: tuple[str, Message, float, int] | None  # the delivery underway

    def time(self) -> float:
        """The virtual clock, as the nodes' ``timer``."""
        return self.now

    def _at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        """Schedule ``fn(*args)`` at virtual time ``t`` (ties run in scheduling order)."""
        heapq.heappush(self.heap, (t, next(self.tick), fn, args))

    def _note(
        self, kind: str, node: str, key: str = "", version: int = 0, detail: str = ""
    ) -> None:
        """Append an instant trace event at the current time."""
        now = self.now
        self.trace.append(new_tuple(TraceEvent, (now, kind, node, key, version, detail, now)))

    def _start(self, i: int) -> CacheNode:
        """A fresh node in slot ``i`` (the engine builds it)."""
        raise NotImplementedError

    def _live(self, req: Request) -> CacheNode | None:
        """The node a request runs on, or None while it is down (the engine decides)."""
        raise NotImplementedError

    def _read_at(
        self, i: int, node: CacheNode, key: str, start: float, latency: float | None
    ) -> None:
        """A read (or a retry that keeps its start): the engine runs it."""
        raise NotImplementedError

    def _held_offset(self, node: str, key: str) -> int:
        """The offset of ``node``'s version of ``key`` (the engine knows restarts)."""
        raise NotImplementedError

    def _load_database(self, read: SimRead, ticket: Ticket) -> None:
        """A cache-aside miss loads the database (cacheaside.py)."""
        raise NotImplementedError

    def _take_lease(self, key: str) -> bool:
        """Take the key's lease (cacheaside.py)."""
        raise NotImplementedError

    def _catch_up(self, i: int, replay: bool) -> None:
        """Node ``i`` reads the stream on from its last id (delivery.py does it)."""
        raise NotImplementedError
